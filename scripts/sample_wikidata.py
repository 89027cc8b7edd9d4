"""Cut a small Wikidata dump (same layout) out of a larger one.

Keeps the `n` most popular items (by a popularity TSV such as PageRank) that
have a label in `language` and a sitelink to `site`, every class they reach
through P31/P279 (so types close as in the full dump), and the property
entities their claims use. Records are copied verbatim.

    python scripts/sample_wikidata.py DUMP POPULARITY.tsv.gz OUTPUT.json.bz2 --n 3000
"""

import bz2
import gzip
import json
from pathlib import Path

import typer

from spacy_refined.kb.wikidata import iter_dump_lines


def main(
    dump: Path,
    popularity: Path,
    output: Path,
    n: int = typer.Option(3000, help="Items to keep"),
    language: str = "en",
    site: str = "enwiki",
) -> None:
    scores = {}
    with gzip.open(popularity, "rt", encoding="utf8") as f:
        for line in f:
            qid, score = line.rstrip("\n").split("\t")
            scores[qid] = float(score)
    records = {}
    for _, line in iter_dump_lines(dump):
        data = json.loads(line)
        records[data["id"]] = (line, data)

    def item_values(data, prop):
        for claim in data.get("claims", {}).get(prop, []):
            value = claim["mainsnak"].get("datavalue", {}).get("value")
            if isinstance(value, dict) and "id" in value:
                yield value["id"]

    eligible = [
        qid
        for qid, (_, data) in records.items()
        if data["type"] == "item" and language in data.get("labels", {}) and site in data.get("sitelinks", {})
    ]
    eligible.sort(key=lambda qid: -scores.get(qid, 0.0))
    keep = set(eligible[:n])
    stack = list(keep)
    while stack:
        data = records[stack.pop()][1]
        for parent in list(item_values(data, "P31")) + list(item_values(data, "P279")):
            if parent in records and parent not in keep:
                keep.add(parent)
                stack.append(parent)
    properties = {p for qid in keep for p in records[qid][1].get("claims", {})}
    keep |= {p for p in properties if p in records}
    ordered = [qid for qid in records if qid in keep]
    with bz2.open(output, "wb") as out:
        out.write(b"[\n")
        for i, qid in enumerate(ordered):
            out.write(records[qid][0] + (b",\n" if i < len(ordered) - 1 else b"\n"))
        out.write(b"]\n")
    typer.echo(f"wrote {len(ordered)} entities ({len(keep & set(eligible[:n]))} popular items) to {output}")


if __name__ == "__main__":
    typer.run(main)
