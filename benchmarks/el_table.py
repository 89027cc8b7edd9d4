"""The entity-linking table of BENCHMARKS.md from `evaluate` outputs.

Reads RESULTS_DIR/<track>__<dataset>__<system>[__ed].json (written by
benchmarks/run_all.sh), writes the rows, with the published anchors, to
OUT.json and prints them as a Markdown table.

Usage: python benchmarks/el_table.py RESULTS_DIR OUT.json
"""
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path
from typing import Any, Dict, List

ANCHORS = [
    ("1", "aida-testb", "Pershina et al. 2015 (PPR)", "ED accuracy, in-KB (NIL not an answer)", 91.8),
    ("1", "aida-testb", "Yamada et al. 2016", "ED accuracy, in-KB (NIL not an answer)", 93.1),
    ("1", "aida-testb", "Yamada et al. 2022 (BERT, global)", "ED accuracy, in-KB (NIL not an answer)", 95.0),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "EL micro F1, InKB (NIL links = FP)", 85.2),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "EL micro F1, InKB (NIL links ignored)", 90.3),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", "in-KB gold mentions linked correctly", 91.9),
]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GB, CPU only"


def command(settings: Dict[str, Any]) -> str:
    parts = ["python -m spacy_refined evaluate", settings["pipeline"], settings["documents"]]
    if settings["gold_spans"]:
        parts.append("--gold-spans")
    if settings.get("kb_option"):
        parts += ["--kb", settings["kb_option"]]
    if settings.get("nil_bias") is not None:
        parts += ["--nil-bias", str(settings["nil_bias"])]
    return " ".join(parts)


def rows_of(path: Path, host: str, day: str) -> List[Dict[str, Any]]:
    """Table rows of one `evaluate` output."""
    track, dataset, system, *variant = path.stem.split("__")
    metrics = json.loads(path.read_text())
    base = {"track": track, "dataset": dataset, "system": system, "docs_per_s": round(metrics["speed"]["docs_per_s"], 1),
            "machine": host, "date": day, "command": command(metrics["settings"]), "source": "ours"}
    gold, ed = metrics["gold"], metrics["ed"]
    values = []
    if metrics["settings"]["gold_spans"]:
        values.append(("ED accuracy, in-KB (NIL not an answer)", ed["accuracy_in_kb_forced"]))
        if ed["recall_at_k"]:
            values.append(("candidate recall@30, in-KB", ed["recall_at_k"]["30"]))
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


def main(results: Path, output: Path) -> None:
    host, day = machine(), date.today().isoformat()
    rows = [row for path in sorted(results.glob("*.json")) for row in rows_of(path, host, day)]
    rows += [{"track": t, "dataset": d, "system": s, "metric": m, "value": v, "docs_per_s": None,
              "machine": "published", "date": None, "command": None, "source": "published"} for t, d, s, m, v in ANCHORS]
    coverage = {(r["track"], r["dataset"]): r for r in rows if r["metric"] == "KB coverage of gold entities"}
    rows = [r for r in rows if r["metric"] != "KB coverage of gold entities"]
    rows += [{**r, "system": "(the KB)", "docs_per_s": None} for r in coverage.values()]
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
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
