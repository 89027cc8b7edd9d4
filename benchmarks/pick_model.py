"""Pick model-best or model-last of a training run: whichever disambiguates the
gold mentions of DEV better (`evaluate --gold-spans`, in-KB accuracy).

`spacy train` keeps as model-best the model with the best dev score during
training, which for track 1 is ED among the mentions the model detects
itself; the benchmark links gold spans, so the final choice is made on them.
Writes OUTPUT, a relative symbolic link to the chosen model, and OUTPUT.json
with both accuracies.

Usage: python benchmarks/pick_model.py TRAINING_DIR DEV.jsonl OUTPUT [--gpu-id N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("model-best", "model-last")


def accuracy(model: Path, dev: Path, gpu_id: int) -> float:
    """In-KB accuracy of `model` on the gold mentions of `dev`, NIL not an answer."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "metrics.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "spacy_refined",
                "evaluate",
                str(model),
                str(dev),
                "--gold-spans",
                "--gpu-id",
                str(gpu_id),
                "--output",
                str(output),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(output.read_text(encoding="utf8"))["ed"]["accuracy_in_kb_forced"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("training", type=Path)
    parser.add_argument("dev", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    args = parser.parse_args()
    scores = {name: accuracy(args.training / name, args.dev, args.gpu_id) for name in MODELS}
    best = max(MODELS, key=scores.get)  # model-best on a tie
    if args.output.is_symlink() or args.output.exists():
        args.output.unlink()
    os.symlink(os.path.relpath(args.training / best, args.output.parent), args.output, target_is_directory=True)
    Path(f"{args.output}.json").write_text(
        json.dumps({"picked": best, "accuracy_in_kb_forced": scores}, indent=1) + "\n", encoding="utf8"
    )
    print(
        f"{args.output} -> {args.training / best} (dev ED accuracy {', '.join(f'{m} {100 * s:.1f}' for m, s in scores.items())})"
    )


if __name__ == "__main__":
    main()
