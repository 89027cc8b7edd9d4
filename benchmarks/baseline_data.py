"""Training data for spaCy's entity_linker: a copy of a DocBin whose gold
entities keep their kb_id only when it is in the KB. NIL and unknown
entities get an empty kb_id, which leaves them out of the entity_linker's
loss (it learns to match each gold entity's KB vector), as `refined_linker`
leaves them out of its disambiguation loss. The mentions stay, for `ner`.

Usage: python benchmarks/baseline_data.py IN.spacy KB_DIR OUT.spacy
"""

import sys
from pathlib import Path

import spacy
from spacy.tokens import DocBin, Span

from spacy_refined import RefinedKB


def blank_unknown_ids(source: Path, kb_path: Path, target: Path) -> None:
    """Write `target`: the docs of `source` with kb_ids not in the KB emptied."""
    nlp = spacy.blank("en")
    kb = RefinedKB.load(kb_path, nlp.vocab)
    docs = list(DocBin().from_disk(source).get_docs(nlp.vocab))
    ids = [ent.kb_id_ for doc in docs for ent in doc.ents]
    known = iter((kb.find(ids) >= 0).tolist())
    kept = 0
    out = DocBin(store_user_data=True)
    for doc in docs:
        ents = []
        for ent in doc.ents:
            keep = next(known)
            kept += keep
            ents.append(Span(doc, ent.start, ent.end, label=ent.label_, kb_id=ent.kb_id_ if keep else ""))
        doc.ents = ents
        out.add(doc)
    out.to_disk(target)
    print(f"{target}: {len(docs)} documents, {len(ids)} mentions, {kept} with an entity in the KB")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    blank_unknown_ids(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
