"""Every question-answering benchmark of docs/benchmarks/question-answering.md
in one command: for each data set, the KB from its triples, training from
the answers alone, Hits@1 with learned and with gold entities, and the KB's
ceilings; a table at the end.

    python benchmarks/qa_all.py [--data ../shared/data/kgqa] [--out benchmarks/out/qa-all] [--only PQL-2H,wc-conj]

Steps already done (a KB, a trained model, an evaluation) are kept, so an
interrupted run goes on where it stopped; delete a data set's folder to redo
it. One training takes minutes (PathQuestion) to about half an hour
(MetaQA) on 2 CPU cores.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "qa_tok2vec.cfg"
NO_INTERSECTION = ["--components.refined_qa.model.intersection", "false"]
NO_TOPIC_MASK = ["--components.refined_qa.model.mask_topic", "false"]


class Benchmark(NamedTuple):
    name: str
    triples: str  # relative to --data
    split: str  # the path of the split files without "train.jsonl" etc.
    test: str  # the split evaluated ("test", or "dev" where the test split is held back)
    steps: int
    eval_frequency: int
    overrides: List[str]
    gold: bool  # the data annotates topic entities that the KB names


def _pq(name: str, steps: int) -> Benchmark:
    return Benchmark(
        name, f"pathquestion/{name}/kb.tsv", f"pathquestion/{name}/", "test", steps, 100, NO_TOPIC_MASK, True
    )


BENCHMARKS = [
    Benchmark("metaqa-1hop", "metaqa/kb.tsv", "metaqa/1hop_", "test", 1500, 250, NO_INTERSECTION, True),
    Benchmark("metaqa-2hop", "metaqa/kb.tsv", "metaqa/2hop_", "test", 1750, 250, NO_INTERSECTION, True),
    Benchmark("metaqa-3hop", "metaqa/kb.tsv", "metaqa/3hop_", "test", 1750, 250, NO_INTERSECTION, True),
    _pq("PQ-2H", 1200),
    _pq("PQ-3H", 1200),
    _pq("PQL-2H", 1100),
    _pq("PQL-3H", 900),
    Benchmark("wc-path1", "wc2014/kb.tsv", "wc2014/path1_", "test", 1600, 100, [], True),
    Benchmark("wc-conj", "wc2014/kb.tsv", "wc2014/conj_", "dev", 1000, 50, [], False),
    Benchmark("wc-conj-no-intersection", "wc2014/kb.tsv", "wc2014/conj_", "dev", 1000, 50, NO_INTERSECTION, False),
]


def run(command: List[str], log: Path) -> None:
    with log.open("w", encoding="utf8") as file_:
        if subprocess.run(command, stdout=file_, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"failed: {' '.join(command)} (see {log})")


def benchmark(spec: Benchmark, data: Path, out: Path) -> Dict[str, float]:
    python = [sys.executable, "-m"]
    kb = out / "kb" / spec.triples.replace("/", "_").replace(".tsv", "")
    if not (kb / "manifest.json").exists():
        kb.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                *python,
                "spacy_refined",
                "kb",
                "build",
                "--triples",
                str(data / spec.triples),
                "-o",
                str(kb),
                "--no-progress",
            ],
            out / f"{kb.name}.log",
        )
    work = out / spec.name
    work.mkdir(parents=True, exist_ok=True)
    test = data / f"{spec.split}{spec.test}.jsonl"
    if not (work / "model" / "model-best").exists():
        run(
            [
                *python,
                "spacy",
                "train",
                str(CONFIG),
                "--output",
                str(work / "model"),
                "--paths.kb",
                str(kb),
                "--paths.train",
                str(data / f"{spec.split}train.jsonl"),
                "--paths.dev",
                str(data / f"{spec.split}dev.jsonl"),
                "--corpora.dev.limit",
                "500",
                "--training.max_steps",
                str(spec.steps),
                "--training.eval_frequency",
                str(spec.eval_frequency),
                "--training.patience",
                "2000",
                *spec.overrides,
            ],
            work / "train.log",
        )
    result: Dict[str, float] = {}
    for entities in ("learned", "gold") if spec.gold else ("learned",):
        metrics = work / f"{entities}.json"
        if not metrics.exists():
            command = [
                *python,
                "spacy_refined",
                "evaluate-qa",
                str(work / "model" / "model-best"),
                str(test),
                "--entities",
                entities,
            ]
            run([*command, "--output", str(metrics)], work / f"{entities}.log")
        scores = json.loads(metrics.read_text())
        result[f"hits1_{entities}"] = scores["hits1"]
        if entities == "learned":
            result.update(hits_k=scores["hits_k"], f1=scores["f1"], er_acc=scores["er_acc"])
    ceiling = work / "ceiling.json"
    if not ceiling.exists():
        keep_topic = ["--keep-topic"] if NO_TOPIC_MASK[0] in spec.overrides else []
        run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "qa_bench.py"),
                "ceiling",
                str(kb),
                str(test),
                *keep_topic,
                "--output",
                str(ceiling),
            ],
            work / "ceiling.log",
        )
    found = next(iter(json.loads(ceiling.read_text()).values()))  # keyed by the questions file
    result.update(ceiling=found.get("ceiling"), hits1_ties=found.get("hits1_ties"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "kgqa")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "qa-all")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    results = {}
    for spec in BENCHMARKS:
        if not only or spec.name in only:
            results[spec.name] = benchmark(spec, args.data, args.out)
            print(spec.name, json.dumps(results[spec.name]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("| data | split | Hits@1 learned | Hits@1 gold | Hits@k | F1 | ER acc. | KB ceiling | tie ceiling |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in BENCHMARKS:
        if spec.name in results:
            r = results[spec.name]
            row = [
                r.get("hits1_learned"),
                r.get("hits1_gold", "–"),
                r.get("hits_k"),
                r.get("f1"),
                r.get("er_acc"),
                r.get("ceiling"),
                r.get("hits1_ties"),
            ]
            print(f"| {spec.name} | {spec.test} | " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
