"""The KB of the spaCy `entity_linker` baseline: a copy of KB_DIR whose entity
vectors are the description embeddings of a trained refined pipeline
(`python -m spacy_refined kb embed`). spaCy's `entity_linker` needs a vector
for every entity, and no word vectors are installed offline; this also gives
the baseline the refined model's descriptions. The copy keeps KB_DIR itself
free of embeddings of one particular model.

Usage: python benchmarks/baseline_kb.py KB_DIR PIPELINE OUT_DIR
"""

import shutil
import subprocess
import sys
from pathlib import Path


def main(kb: Path, pipeline: Path, output: Path) -> None:
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(kb, output)
    subprocess.run(
        [sys.executable, "-m", "spacy_refined", "kb", "embed", str(pipeline), str(output), "--no-progress"], check=True
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*(Path(arg) for arg in sys.argv[1:]))
