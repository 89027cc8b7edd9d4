"""Save the zero-training pipeline of a KB: alias mentions and an untrained
`refined_linker`, which links by the KB alone (README, "Linking with your own
entities"), so that `evaluate` can measure it like a trained one.

    python zero_training.py KB OUTPUT
"""

from pathlib import Path

import spacy
import typer


def main(kb: Path, output: Path, lang: str = "en") -> None:
    """Save a pipeline that links the aliases of the KB at KB without training (the KB is referred to by path)."""
    nlp = spacy.blank(lang)
    nlp.add_pipe("refined_kb", config={"external_kb_path": str(kb.resolve()), "kb_copy": False})
    nlp.add_pipe("refined_linker", config={"mentions": {"@misc": "spacy_refined.AliasMentions.v1"}})
    nlp.initialize()
    nlp.to_disk(output)
    print(f"saved the zero-training pipeline of {kb} to {output}")


if __name__ == "__main__":
    typer.run(main)
