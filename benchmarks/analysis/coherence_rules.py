"""How far the KB alone takes disambiguation, before any training.

For the gold mentions of EL documents whose gold entity is among their
candidates, prints the accuracy of two rules over the KB's candidates:
* prior: the candidate with the highest P(e|m);
* coherence: the candidate connected by KB facts to the most other mention
  groups of the document (`spacy_refined.pipeline.coherence`), the prior
  breaking ties.

A one-off analysis, not part of benchmarks/project.yml: its figures are in
BENCHMARKS.md ("Design notes", coherence) and docs/experiments.md.

Usage: python benchmarks/analysis/coherence_rules.py KB DOCS.jsonl
"""

import sys

import numpy as np
import srsly

from spacy_refined.kb import RefinedKB
from spacy_refined.kb.candidates import person_name_candidates
from spacy_refined.pipeline.coherence import document_coherence


def main(kb_path: str, docs_path: str) -> None:
    kb = RefinedKB.load(kb_path)
    correct = {"prior": 0, "coherence": 0}
    total = 0
    for record in srsly.read_jsonl(docs_path):
        texts = [record["text"][start:end] for start, end in (label["span"] for label in record["labels"])]
        batch = person_name_candidates(kb, texts)
        coherence = document_coherence(kb, texts, batch.lengths, batch.entities, batch.priors)
        gold = kb.find([label.get("entity_id") or "" for label in record["labels"]])
        for m in range(len(texts)):
            start, end = batch.offsets[m], batch.offsets[m + 1]
            entities = batch.entities[start:end]
            if gold[m] < 0 or gold[m] not in entities:
                continue
            total += 1
            priors = batch.priors[start:end]
            correct["prior"] += entities[np.argmax(priors)] == gold[m]
            correct["coherence"] += entities[np.argmax(coherence[start:end, 1] + 1e-3 * priors)] == gold[m]
    for rule, n in correct.items():
        print(f"{rule}: {100 * n / max(total, 1):.1f}% of {total} gold mentions with their entity among the candidates")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
