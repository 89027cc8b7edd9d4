"""Cut the embedded MetaQA sample (assets/metaqa-sample/) from the shared KGQA data.

    python scripts/sample_metaqa.py ../shared/data/kgqa/metaqa assets/metaqa-sample

The sample KB is every triple of the movies of `--directors` directors drawn
at random (seeded). A question is kept if its topic entity is in the sample
KB and its own relation path (from its `qtype`) reaches at least one of its
gold answers there; its answers are the gold answers so reached (a question
about an actor asks, in the sample, about the actor's movies in the sample).
At most `--per-split` questions are kept per hop count and split, drawn at
random; the 1-, 2- and 3-hop questions of a split go to one file
(`train.jsonl`, `dev.jsonl`, `test.jsonl`; the `qtype` tells the hops). The
output is the same on a re-run.
"""

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from qa_bench import METAQA_RELATIONS  # noqa: E402


def follow_path(
    facts: Dict[Tuple[str, str], Set[str]], inverse: Dict[Tuple[str, str], Set[str]], topic: str, qtype: str
) -> Set[str]:
    words = qtype.split("_to_")
    reached = {topic}
    for a, b in zip(words, words[1:]):
        step = set()
        for entity in reached:
            if a == "movie":
                step |= facts.get((entity, METAQA_RELATIONS[b]), set())
            else:
                step |= inverse.get((entity, METAQA_RELATIONS[a]), set())
        reached = step
    return reached - {topic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metaqa", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--directors", type=int, default=250)
    parser.add_argument("--per-split", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    triples = [
        tuple(line.rstrip("\n").split("\t")) for line in open(args.metaqa / "kb.tsv", encoding="utf8") if line.strip()
    ]
    directors = sorted({t for h, r, t in triples if r == "directed_by"})
    rng = random.Random(args.seed)
    chosen = set(rng.sample(directors, args.directors))
    movies = {h for h, r, t in triples if r == "directed_by" and t in chosen}
    sample = [t for t in triples if t[0] in movies]
    facts: Dict[Tuple[str, str], Set[str]] = defaultdict(set)
    inverse: Dict[Tuple[str, str], Set[str]] = defaultdict(set)
    for h, r, t in sample:
        facts[(h, r)].add(t)
        inverse[(t, r)].add(h)
    entities = {h for h, _, _ in sample} | {t for _, _, t in sample}
    args.output.mkdir(parents=True, exist_ok=True)
    with open(args.output / "kb.tsv", "w", encoding="utf8") as f:
        f.writelines(f"{h}\t{r}\t{t}\n" for h, r, t in sample)
    counts = {"triples": len(sample), "entities": len(entities), "movies": len(movies)}
    for split in ("train", "dev", "test"):
        kept: List[dict] = []
        for hops in (1, 2, 3):
            candidates: List[dict] = []
            for line in open(args.metaqa / f"{hops}hop_{split}.jsonl", encoding="utf8"):
                record = json.loads(line)
                topic = record["topic_entities"][0]
                if topic not in entities:
                    continue
                reached = follow_path(facts, inverse, topic, record["qtype"])
                answers = [a for a in record["answers"] if a in reached]
                if answers:
                    candidates.append({**record, "answers": answers})
            chosen = sorted(rng.sample(candidates, min(args.per_split, len(candidates))), key=lambda r: r["id"])
            counts[f"{hops}hop_{split}"] = len(chosen)
            kept.extend(chosen)
        with open(args.output / f"{split}.jsonl", "w", encoding="utf8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    print(json.dumps(counts, indent=2))


if __name__ == "__main__":
    main()
