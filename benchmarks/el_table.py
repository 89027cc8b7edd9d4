"""The entity-linking table of BENCHMARKS.md from `evaluate` outputs.

Reads RESULTS_DIR/<track>__<dataset>__<system>[__ed|__blis].json (written by
benchmarks/run_all.sh or run_transformer.sh; __blis: a speed-only row), writes the rows, with the
published anchors, to OUT.json and prints them as a Markdown table. With
--merge, the rows already in OUT.json stay, except those that RESULTS_DIR
gives again (same track, dataset, system and metric): how the rows of a
run on another machine (a GPU) join the table.

Usage: python benchmarks/el_table.py RESULTS_DIR OUT.json [--merge]
"""
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, Dict, List

from spacy_refined.evaluation.runner import machine_description

ANCHORS = [
    ("1", "aida-testb", "Pershina et al. 2015 (PPR)", "ED accuracy, in-KB (NIL not an answer)", 91.8),
    ("1", "aida-testb", "Yamada et al. 2016", "ED accuracy, in-KB (NIL not an answer)", 93.1),
    ("1", "aida-testb", "Yamada et al. 2022 (BERT, global)", "ED accuracy, in-KB (NIL not an answer)", 95.0),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "EL micro F1, InKB (NIL links = FP)", 85.2),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "EL micro F1, InKB (NIL links ignored)", 90.3),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "in-KB gold mentions linked correctly", 91.9),
]


def command(settings: Dict[str, Any]) -> str:
    parts = ["python -m spacy_refined evaluate", settings["pipeline"], settings["documents"]]
    if settings["gold_spans"]:
        parts.append("--gold-spans")
    if settings.get("kb_option"):
        parts += ["--kb", settings["kb_option"]]
    if settings.get("nil_bias") is not None:
        parts += ["--nil-bias", str(settings["nil_bias"])]
    if settings.get("train_docs"):
        parts += ["--train-docs", settings["train_docs"]]
    if settings.get("gpu_id", -1) >= 0:
        parts += ["--gpu-id", str(settings["gpu_id"])]
    if settings.get("gemm") == "blis":
        parts += ["--gemm", "blis"]
    return " ".join(parts)


def rows_of(path: Path, host: str, day: str) -> List[Dict[str, Any]]:
    """Table rows of one `evaluate` output (`host`, `day`: where the output does not name its machine and date)."""
    track, dataset, system, *variant = path.stem.split("__")
    metrics = json.loads(path.read_text())
    base = {"track": track, "dataset": dataset, "system": system, "docs_per_s": round(metrics["speed"]["docs_per_s"], 1),
            "machine": metrics.get("machine", host), "date": metrics.get("date", day), "command": command(metrics["settings"]), "source": "ours"}
    if variant == ["blis"]:  # a speed-only run with thinc's default matrix products
        return [{**base, "metric": "docs/s with blis matrix products (thinc's default)", "value": base["docs_per_s"]}]
    gold, ed = metrics["gold"], metrics["ed"]
    values = []
    if metrics["settings"]["gold_spans"]:
        values.append(("ED accuracy, in-KB (NIL not an answer)", ed["accuracy_in_kb_forced"]))
        if ed["recall_at_k"]:
            values.append(("candidate recall@30, in-KB", ed["recall_at_k"]["30"]))
        for group, name in (("seen", "seen"), ("unseen", "not seen")):
            if ed.get("by_training") and ed["by_training"][group]["in_kb"]:
                values.append((f"ED accuracy, in-KB (NIL not an answer), entities {name} in training", ed["by_training"][group]["accuracy_in_kb_forced"]))
    else:
        values += [
            ("EL micro F1, InKB (NIL links = FP)", metrics["el"]["nil_fp"]["micro"]["f"]),
            ("EL micro F1, InKB (NIL links ignored)", metrics["el"]["nil_ignored"]["micro"]["f"]),
            ("in-KB gold mentions linked correctly", ed["accuracy_in_kb"]),
            ("MD F1", metrics["md"]["micro"]["f"]),
        ]
        if gold["in_kb"] is not None:
            values.append(("KB coverage of gold entities", gold["in_kb"] / gold["linked"] if gold["linked"] else 0.0))
    return [{**base, "metric": metric, "value": round(100 * value, 1)} for metric, value in values]


def row_key(row: Dict[str, Any]) -> tuple:
    return row["track"], row["dataset"], row["system"], row["metric"]


def main(results: Path, output: Path, merge: bool = False) -> None:
    host, day = machine_description(), date.today().isoformat()
    rows = [row for path in sorted(results.glob("*.json")) for row in rows_of(path, host, day)]
    coverage = {(r["track"], r["dataset"]): r for r in rows if r["metric"] == "KB coverage of gold entities"}
    rows = [r for r in rows if r["metric"] != "KB coverage of gold entities"]
    rows += [{**r, "system": "(the KB)", "docs_per_s": None} for r in coverage.values()]
    if merge and output.exists():
        given = {row_key(r) for r in rows}
        rows += [r for r in json.loads(output.read_text(encoding="utf8")) if r["source"] == "ours" and row_key(r) not in given]
    rows += [{"track": t, "dataset": d, "system": s, "metric": m, "value": v, "docs_per_s": None,
              "machine": "published", "date": None, "command": None, "source": "published"} for t, d, s, m, v in ANCHORS]
    order = [metric for _, _, _, metric, _ in ANCHORS] + ["EL micro F1, InKB (NIL links = FP)", "EL micro F1, InKB (NIL links ignored)"]
    rows.sort(key=lambda r: (r["track"], r["dataset"] != "aida-testb" and r["dataset"] != "testb", r["dataset"],
                             order.index(r["metric"]) if r["metric"] in order else len(order), r["metric"], r["source"] != "published", r["system"]))
    output.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf8")
    print("| track | dataset | system | metric | value | docs/s | machine | date | command |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["track"], r["dataset"], r["system"], r["metric"], f"{r['value']:.1f}", r["docs_per_s"] if r["docs_per_s"] is not None else "–",
                 r["machine"], r["date"] or "–", f"`{r['command']}`" if r["command"] else "published"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3) or args[2:] not in ([], ["--merge"]):
        sys.exit(__doc__)
    main(Path(args[0]), Path(args[1]), merge=args[2:] == ["--merge"])
