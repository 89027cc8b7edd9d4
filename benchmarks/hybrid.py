"""Assemble spaCy's `tok2vec` + `ner` (from the baseline pipeline) with a
trained `refined_linker` linking their entities (`EntMentions.v1`), and save it.

Usage: python benchmarks/hybrid.py NER_PIPELINE REFINED_PIPELINE OUT
"""

import sys
from pathlib import Path

import spacy

# No `import spacy_refined`: spaCy finds the refined_linker factory (and the KB
# functions of the baseline's config) through the package's entry points.


def assemble(ner_path: Path, linker_path: Path, output: Path) -> None:
    """Save NER_PIPELINE's tok2vec and ner followed by REFINED_PIPELINE's components, refined_linker linking doc.ents."""
    ner_nlp = spacy.load(ner_path)
    linker_nlp = spacy.load(linker_path)
    nlp = spacy.blank(ner_nlp.lang, vocab=ner_nlp.vocab)
    for name in ("tok2vec", "ner"):
        nlp.add_pipe(name, source=ner_nlp)
    for name in linker_nlp.pipe_names:  # refined_linker, and the component holding its KB where it has one
        if name not in nlp.pipe_names:
            nlp.add_pipe(name, source=linker_nlp)
    nlp.to_disk(output)
    config = spacy.util.load_config(output / "config.cfg")
    config["components"]["refined_linker"]["mentions"] = {"@misc": "spacy_refined.EntMentions.v1"}
    config.to_disk(output / "config.cfg")
    print(f"saved {nlp.pipe_names} to {output} (refined_linker linking doc.ents)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    assemble(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
