"""Many segments: open time and `kb add` time of a KB after N single-entity
`kb add`s, before and after `kb compact` (issue 21).

    python benchmarks/kb_segments_bench.py [--segments 300] [--entities 20000]

Prints one JSON object: the KB's size, the seconds of the last adds, of
opening the KB (median of 5), of one more add, of the compaction, and of
opening and adding after it.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from spacy_refined.kb.builder import KBBuilder, append_segment
from spacy_refined.kb.compact import compact_kb
from spacy_refined.kb.store import RefinedKB


def entity(i: int) -> dict:
    return {"id": f"E{i}", "label": f"entity {i}", "aliases": [f"alias {i}", f"name {i % 997}"], "popularity": 0.5}


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def open_seconds(path: Path) -> float:
    return statistics.median(timed(RefinedKB.load, path) for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--entities", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "entities.jsonl"
        source.write_text("".join(json.dumps(entity(i)) + "\n" for i in range(args.entities)))
        path = Path(tmp) / "kb"
        with KBBuilder(path, progress=False) as builder:
            builder.add_entities_jsonl(source)
        adds = [timed(append_segment, path, [entity(args.entities + i)]) for i in range(args.segments)]
        result = {
            "entities": args.entities,
            "segments": args.segments + 1,
            "first_add_s": round(adds[0], 3),
            "last_adds_s": round(statistics.median(adds[-10:]), 3),
            "open_s": round(open_seconds(path), 3),
            "add_s": round(timed(append_segment, path, [entity(10**9)]), 3),
            "compact_s": round(timed(compact_kb, path), 3),
        }
        result["open_after_compact_s"] = round(open_seconds(path), 3)
        result["add_after_compact_s"] = round(timed(append_segment, path, [entity(10**9 + 1)]), 3)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
