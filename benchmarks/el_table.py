"""The entity-linking results of BENCHMARKS.md, from `evaluate` outputs.

Table mode reads RESULTS_DIR/<track>__<dataset>__<system>[__ed|__blis].json
(written by the commands of benchmarks/project.yml; __ed: disambiguation of
the gold mentions, __blis: a speed-only row) and writes one row per metric,
with the published anchors, to TABLE.json. Paths in the rows' commands are
written relative to the benchmark's output and data directories (`$OUT`,
`$DATA`: the project's `out` and `data` variables), so the table names no
machine-local path. With --merge, the rows already in TABLE.json stay,
except those that RESULTS_DIR gives again (same track, dataset, system and
metric): how a partial run, or a run on another machine (a GPU), joins the
table.

Markdown mode prints the table pivoted, one table per track and dataset
(rows: systems, columns: metrics); --update FILE writes it into FILE between
the markers `<!-- el_table.py: begin -->` and `<!-- el_table.py: end -->`.

Usage:
  python el_table.py RESULTS_DIR TABLE.json [--merge] [--out OUT] [--data DATA]
  python el_table.py --markdown TABLE.json|RESULTS_DIR [--update ../BENCHMARKS.md]
"""

import argparse
import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

ED = "ED accuracy, in-KB (NIL not an answer)"
EL_FP = "EL micro F1, InKB (NIL links = FP)"
EL_IGNORED = "EL micro F1, InKB (NIL links ignored)"
LINKED = "in-KB gold mentions linked correctly"
COVERAGE = "KB coverage of gold entities"
BLIS = "docs/s with blis matrix products (thinc's default)"
ANCHORS = [
    ("1", "aida-testb", "Pershina et al. 2015 (PPR)", ED, 91.8),
    ("1", "aida-testb", "Yamada et al. 2016", ED, 93.1),
    ("1", "aida-testb", "Yamada et al. 2022 (BERT, global)", ED, 95.0),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", EL_FP, 85.2),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", EL_IGNORED, 90.3),
    ("2", "testb", "ReFinED (AIDA model, all of Wikidata)", LINKED, 91.9),
]
# Markdown: the sections, and the columns with their short names (see BENCHMARKS.md, "Setup")
SECTIONS = {
    ("1", "aida-testb"): "Track 1: AIDA testb (PPRforNED candidates, gold mentions)",
    ("2", "testb"): "Track 2: AIDA testb (Wikidata mini dump)",
    ("2", "msnbc"): "Track 2: MSNBC (Wikidata mini dump)",
    ("2", "testa"): "Track 2: AIDA testa (the dev set; NIL bias rows only)",
}
COLUMNS = {
    EL_FP: "EL F1",
    EL_IGNORED: "EL F1, NIL ign.",
    LINKED: "in-KB linked",
    "MD F1": "MD F1",
    ED: "ED acc.",
    f"{ED}, entities seen in training": "ED seen",
    f"{ED}, entities not seen in training": "ED unseen",
    "candidate recall@30, in-KB": "recall@30",
    "docs/s": "docs/s",
    "docs/s, gold spans": "docs/s ED",
    BLIS: "docs/s blis",
}
BEGIN, END = "<!-- el_table.py: begin -->", "<!-- el_table.py: end -->"


def portable(path: Optional[str], places: Dict[str, Path]) -> Optional[str]:
    """`path` as `$NAME/...` for the first of `places` (NAME: directory) that holds it; a link to a
    picked model (pick_model.py) is followed one step, so that the command names the model it ran."""
    if not path:
        return path
    if os.path.islink(path):
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    absolute = Path(os.path.abspath(path))
    for name, directory in places.items():
        if directory == absolute or directory in absolute.parents:
            return f"${name}/{absolute.relative_to(directory).as_posix()}".rstrip("/")
    return path


def command(settings: Dict[str, Any], places: Dict[str, Path]) -> str:
    """The `evaluate` command behind a results file."""
    parts = [
        "python -m spacy_refined evaluate",
        portable(settings["pipeline"], places),
        portable(settings["documents"], places),
    ]
    if settings["gold_spans"]:
        parts.append("--gold-spans")
    if settings.get("kb_option"):
        parts += ["--kb", portable(settings["kb_option"], places)]
    if settings.get("nil_bias") is not None:
        parts += ["--nil-bias", str(settings["nil_bias"])]
    if settings.get("train_docs"):
        parts += ["--train-docs", portable(settings["train_docs"], places)]
    if settings.get("gpu_id", -1) >= 0:
        parts += ["--gpu-id", str(settings["gpu_id"])]
    if settings.get("gemm") == "blis":
        parts += ["--gemm", "blis"]
    return " ".join(parts)


def this_machine() -> str:
    from spacy_refined.evaluation.runner import machine_description

    return machine_description()


def rows_of(path: Path, places: Dict[str, Path]) -> List[Dict[str, Any]]:
    """Table rows of one `evaluate` output (this machine and today where the output does not name its machine and date)."""
    track, dataset, system, *variant = path.stem.split("__")
    metrics = json.loads(path.read_text())
    base = {
        "track": track,
        "dataset": dataset,
        "system": system,
        "docs_per_s": round(metrics["speed"]["docs_per_s"], 1),
        "machine": metrics.get("machine") or this_machine(),
        "date": metrics.get("date") or date.today().isoformat(),
        "command": command(metrics["settings"], places),
        "source": "ours",
    }
    if variant == ["blis"]:  # a speed-only run with thinc's default matrix products
        return [{**base, "metric": BLIS, "value": base["docs_per_s"]}]
    gold, ed = metrics["gold"], metrics["ed"]
    values = []
    if metrics["settings"]["gold_spans"]:
        values.append((ED, ed["accuracy_in_kb_forced"]))
        if ed["recall_at_k"]:
            values.append(("candidate recall@30, in-KB", ed["recall_at_k"]["30"]))
        for group, name in (("seen", "seen"), ("unseen", "not seen")):
            if ed.get("by_training") and ed["by_training"][group]["in_kb"]:
                values.append((f"{ED}, entities {name} in training", ed["by_training"][group]["accuracy_in_kb_forced"]))
    else:
        values += [
            (EL_FP, metrics["el"]["nil_fp"]["micro"]["f"]),
            (EL_IGNORED, metrics["el"]["nil_ignored"]["micro"]["f"]),
            (LINKED, ed["accuracy_in_kb"]),
            ("MD F1", metrics["md"]["micro"]["f"]),
        ]
        if gold["in_kb"] is not None:
            values.append((COVERAGE, gold["in_kb"] / gold["linked"] if gold["linked"] else 0.0))
    return [{**base, "metric": metric, "value": round(100 * value, 1)} for metric, value in values]


def row_key(row: Dict[str, Any]) -> tuple:
    return row["track"], row["dataset"], row["system"], row["metric"]


def read_results(results: Path, places: Dict[str, Path]) -> List[Dict[str, Any]]:
    """The rows of a directory of `evaluate` outputs (KB coverage once per dataset, as the system "(the KB)")."""
    rows = [row for path in sorted(results.glob("*.json")) for row in rows_of(path, places)]
    coverage = {(r["track"], r["dataset"]): r for r in rows if r["metric"] == COVERAGE}
    rows = [r for r in rows if r["metric"] != COVERAGE]
    return rows + [{**r, "system": "(the KB)", "docs_per_s": None} for r in coverage.values()]


def write_table(results: Path, output: Path, places: Dict[str, Path], merge: bool = False) -> List[Dict[str, Any]]:
    rows = read_results(results, places)
    if merge and output.exists():
        given = {row_key(r) for r in rows}
        rows += [
            r
            for r in json.loads(output.read_text(encoding="utf8"))
            if r["source"] == "ours" and row_key(r) not in given
        ]
    rows += [
        {
            "track": t,
            "dataset": d,
            "system": s,
            "metric": m,
            "value": v,
            "docs_per_s": None,
            "machine": "published",
            "date": None,
            "command": None,
            "source": "published",
        }
        for t, d, s, m, v in ANCHORS
    ]
    order = [metric for _, _, _, metric, _ in ANCHORS] + [EL_FP, EL_IGNORED]
    rows.sort(
        key=lambda r: (
            r["track"],
            r["dataset"] != "aida-testb" and r["dataset"] != "testb",
            r["dataset"],
            order.index(r["metric"]) if r["metric"] in order else len(order),
            r["metric"],
            r["source"] != "published",
            r["system"],
        )
    )
    output.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf8")
    return rows


def system_order(system: str, source: str) -> tuple:
    """Published anchors, spaCy's baseline, our tok2vec variants, spaCy's NER + our linker, our MiniLM variants."""
    families = ["spacy-entity_linker", "refined-tok2vec", "spacy-ner+", "refined-minilm"]
    family = next((i for i, prefix in enumerate(families) if system.startswith(prefix)), len(families))
    return (source != "published", family, system)


def pivot(rows: Iterable[Dict[str, Any]]) -> str:
    """Markdown: per track and dataset, a table of systems by metrics (the KB's coverage in its title)."""
    tables: Dict[tuple, Dict[str, Dict[str, float]]] = {}
    sources: Dict[str, str] = {}
    notes: Dict[tuple, str] = {}
    for r in rows:
        section = (r["track"], r["dataset"])
        if r["metric"] == COVERAGE:
            notes[section] = f"; KB coverage of the gold links {r['value']:.1f}%"
            continue
        cells = tables.setdefault(section, {}).setdefault(r["system"], {})
        sources[r["system"]] = r["source"]
        cells[r["metric"]] = r["value"]
        if r["docs_per_s"] is not None and r["metric"] != BLIS:
            end_to_end = r["metric"] in (EL_FP, EL_IGNORED, LINKED, "MD F1")
            cells["docs/s" if end_to_end else "docs/s, gold spans"] = r["docs_per_s"]
    lines = []
    for section in sorted(tables, key=lambda s: list(SECTIONS).index(s) if s in SECTIONS else len(SECTIONS)):
        systems = tables[section]
        columns = [c for c in COLUMNS if any(c in cells for cells in systems.values())]
        lines += [
            f"**{SECTIONS.get(section, ' '.join(section))}{notes.get(section, '')}**",
            "",
            "| system | " + " | ".join(COLUMNS[c] for c in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for system in sorted(systems, key=lambda s: system_order(s, sources[s])):
            name = f"{system}, published" if sources[system] == "published" else system
            lines.append(
                f"| {name} | "
                + " | ".join(f"{systems[system][c]:.1f}" if c in systems[system] else "–" for c in columns)
                + " |"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def update(path: Path, text: str) -> None:
    """Replace what lies between the markers in `path` by `text`."""
    document = path.read_text(encoding="utf8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), flags=re.S)
    if not pattern.search(document):
        raise SystemExit(f"error: {path} has no {BEGIN} ... {END} markers")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", document), encoding="utf8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", help="directory of `evaluate` outputs")
    parser.add_argument("table", type=Path, nargs="?", help="the table (JSON) to write")
    parser.add_argument("--merge", action="store_true", help="keep the rows of TABLE that RESULTS does not give again")
    parser.add_argument("--out", type=Path, help="the benchmark's output directory, written $OUT in commands")
    parser.add_argument("--data", type=Path, help="the data directory, written $DATA in commands")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="TABLE",
        help="print TABLE (JSON, or a directory of `evaluate` outputs) as pivoted Markdown tables",
    )
    parser.add_argument(
        "--update", type=Path, metavar="FILE", help="with --markdown: write the tables into FILE between its markers"
    )
    args = parser.parse_args()
    places = {name: Path(os.path.abspath(p)) for name, p in (("OUT", args.out), ("DATA", args.data)) if p is not None}
    if args.markdown:
        rows = (
            read_results(args.markdown, places)
            if args.markdown.is_dir()
            else json.loads(args.markdown.read_text(encoding="utf8"))
        )
        text = pivot(rows)
        if args.update:
            update(args.update, text)
        else:
            print(text)
        return
    if args.results is None or args.table is None:
        parser.error("give RESULTS_DIR and TABLE.json, or --markdown TABLE.json")
    print(pivot(write_table(args.results, args.table, places, merge=args.merge)))


if __name__ == "__main__":
    main()
