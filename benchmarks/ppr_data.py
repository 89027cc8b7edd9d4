"""Track 1 data: a KB of Wikipedia titles from the PPRforNED candidates of AIDA-CoNLL.

Writes to OUT:
* entities.jsonl: one entity per candidate title: label (the page name),
  type (GPE, ORG, PER; UNK left untyped), popularity (Wikipedia in-links),
  facts (links to other candidates, relation "links_to") and a description
  made of the candidate's type and the names of the most popular
  candidates it links to (the "context" of the description encoder);
* mention_counts.tsv: (surface, candidate title, evidence): every candidate
  of a surface gets its in-links + 1 as evidence, so its prior is its share
  of the in-links of all the surface's candidates (a popularity prior). The
  AIDA-train gold links are left out of the prior on purpose: with them the
  prior is right far more often on the training mentions than on testb's,
  and the model learns to trust it more than it deserves (figures in
  docs/experiments.md);
* {train,testa,testb}.jsonl: the AIDA documents with the PPRforNED gold
  title as entity ID ("<NIL>" for NIL) and the gold candidate's type.

Usage: python benchmarks/ppr_data.py ../shared/data/el/aida OUT
"""

import bz2
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

MAX_LINKED_NAMES = 40
SPLITS = ("train", "testa", "testb")


def read_ppr(path: Path) -> Iterator[Dict[str, Any]]:
    with bz2.open(path, "rt", encoding="utf8") as file:
        for line in file:
            yield json.loads(line)


def build(aida: Path, out: Path) -> None:
    """Write the track-1 entities, mention counts and documents (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    entities: Dict[str, Dict[str, Any]] = {}
    title_of: Dict[int, str] = {}
    links: Dict[str, set] = defaultdict(set)
    prior: Dict[Tuple[str, str], int] = {}
    gold_by_span: Dict[Tuple[str, int, int], Tuple[str, str]] = {}
    for document in read_ppr(aida / "ppr_candidates.jsonl.bz2"):
        for mention in document["mentions"]:
            candidates = mention["candidates"]
            types = {}
            for c in candidates:
                title_of[c["page_id"]] = c["title"]
                types[c["title"]] = c["type"]
                entities.setdefault(
                    c["title"], {"id": c["title"], "label": c["name"], "type": c["type"], "popularity": c["in_count"]}
                )
                links[c["title"]].update(c["links"])
                for surface in {mention["text"], mention["ppr_text"]}:
                    prior[(surface, c["title"])] = c["in_count"] + 1
            gold = mention["gold_title"]
            if mention["span"] is not None:
                gold_type = types.get(gold, "UNK") if gold else "NIL"
                gold_by_span[(document["id"], *mention["span"])] = (gold or "<NIL>", gold_type)
    with (out / "entities.jsonl").open("w", encoding="utf8") as file:
        for title, entity in entities.items():
            linked = sorted(
                {title_of[p] for p in links[title] if p in title_of} - {title},
                key=lambda t: (-entities[t]["popularity"], t),
            )
            names = [entities[t]["label"] for t in linked[:MAX_LINKED_NAMES]]
            record = {
                "id": title,
                "label": entity["label"],
                "description": f"{entity['type']}: " + ", ".join(names),
                "types": [entity["type"]] if entity["type"] != "UNK" else [],
                "popularity": entity["popularity"],
                "facts": [{"relation": "links_to", "object": t} for t in linked],
            }
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    with (out / "mention_counts.tsv").open("w", encoding="utf8") as file:
        for (surface, title), count in prior.items():
            if "\t" not in surface and surface.strip():
                file.write(f"{surface}\t{title}\t{count}\n")
    for split in SPLITS:
        n_linked = 0
        with (
            (aida / f"{split}.jsonl").open(encoding="utf8") as source,
            (out / f"{split}.jsonl").open("w", encoding="utf8") as target,
        ):
            for line in source:
                record = json.loads(line)
                labels: List[Dict[str, Any]] = []
                for label in record["labels"]:
                    gold = gold_by_span.get((record["id"], *label["span"]))
                    if gold is None:
                        title = label.get("wikipedia_title")
                        gold = (
                            (title, entities[title]["type"])
                            if title in entities
                            else (title or "<NIL>", "UNK" if title else "NIL")
                        )
                    n_linked += gold[0] != "<NIL>"
                    labels.append({"span": label["span"], "entity_id": gold[0], "type": gold[1]})
                target.write(
                    json.dumps({"id": record["id"], "text": record["text"], "labels": labels}, ensure_ascii=False)
                    + "\n"
                )
        print(f"{split}: {n_linked} linked mentions")
    print(f"{len(entities)} entities, {len(prior)} (surface, candidate) pairs written to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(Path(sys.argv[1]), Path(sys.argv[2]))
