#!/usr/bin/env bash
# The GPU path, end to end, in at most ~8 minutes on one GPU:
#  1. train configs/transformer.cfg a few hundred steps on the project's sample corpus, on the GPU;
#  2. link AIDA-CoNLL testb with `link --gpu-id 0` (docs/s) and time the bare encoder and the
#     whole pipeline there (benchmarks/linker_bench.py: linking's share over the encoder);
#  3. link the first documents on CPU too and check that CPU and GPU give the same links.
#
#   bash benchmarks/gpu_check.sh ENCODER_DIR [STEPS] [CPU_DOCS]
#
# ENCODER_DIR: a Hugging Face encoder directory (weights and tokenizer; the machine is offline),
# e.g. the side-by-side harness's 6-layer roberta-base-width encoder (make_encoder.py).
# Needs kb/ and corpus/ (`python -m spacy project run kb` and `... corpus`: built here if missing)
# and the shared data at ../shared/data (or $DATA). Results go to $OUT (default gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."
ENCODER=${1:?usage: gpu_check.sh ENCODER_DIR [STEPS] [CPU_DOCS]}
STEPS=${2:-300}
CPU_DOCS=${3:-40}
DATA=${DATA:-../shared/data}
OUT=${OUT:-gpu-check}
TESTB=$DATA/el/aida/testb.jsonl
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
[ -f kb/manifest.json ] || python -m spacy project run kb
[ -f corpus/train.spacy ] || python -m spacy project run corpus

echo "== 1. train $STEPS steps on GPU 0"
start=$(date +%s)
python -m spacy train configs/transformer.cfg --output "$OUT/train" --gpu-id 0 \
  --paths.train corpus/train.spacy --paths.dev corpus/dev.spacy --paths.kb kb --paths.encoder "$ENCODER" \
  --training.max_steps "$STEPS" --training.eval_frequency "$STEPS" --training.logger.progress_bar false \
  > "$OUT/train.log" 2>&1 || { tail -30 "$OUT/train.log"; exit 1; }
echo "trained in $(( $(date +%s) - start )) s"
PIPE=$OUT/train/model-last

echo "== 2. link AIDA testb on GPU 0; encoder alone vs the pipeline"
rm -rf "$OUT/link-gpu"
python -m spacy_refined link "$PIPE" "$TESTB" -o "$OUT/link-gpu" --gpu-id 0 --batch-size 32 --no-progress | tee "$OUT/link-gpu.txt"
python benchmarks/linker_bench.py "$PIPE" "$TESTB" --gpu-id 0 --repeats 3 --output "$OUT/linker_bench.md"
cat "$OUT/linker_bench.md"

echo "== 3. the same links on CPU ($CPU_DOCS documents)"
head -n "$CPU_DOCS" "$TESTB" > "$OUT/testb-head.jsonl"
rm -rf "$OUT/link-cpu"
python -m spacy_refined link "$PIPE" "$OUT/testb-head.jsonl" -o "$OUT/link-cpu" --batch-size 32 --no-progress
python - "$OUT" "$CPU_DOCS" <<'PY'
import sys
from spacy_refined.linking import read_output
out, n = sys.argv[1], int(sys.argv[2])
gpu = list(read_output(f"{out}/link-gpu"))[:n]
cpu = list(read_output(f"{out}/link-cpu"))
links = lambda r: [(e["start"], e["end"], e["kb_id"], e["label"]) for e in r["entities"]]
same = sum(links(a) == links(b) for a, b in zip(gpu, cpu))
n_ents = sum(len(r["entities"]) for r in cpu)
print(f"CPU vs GPU: {same}/{len(cpu)} documents with identical links ({n_ents} entities on CPU)")
worst = max((abs(x["score"] - y["score"]) for a, b in zip(gpu, cpu) if links(a) == links(b)
             for x, y in zip(a["entities"], b["entities"]) if x["score"] is not None), default=0.0)
print(f"largest score difference where the links agree: {worst:.2e}")
sys.exit(0 if same == len(cpu) else 1)
PY
