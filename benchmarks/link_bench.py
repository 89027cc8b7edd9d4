"""`link` at corpus scale: docs/s and peak memory of one process, `--n-process 2`
and `--engine ray` (a local Ray runtime), and peak memory as the corpus grows.

    python benchmarks/link_bench.py PIPELINE [--docs 10000] [--memory-docs 10000,100000] [--output results.json] [--trace DIR] [--link-args '--batch-size 64']

The corpus is AIDA-CoNLL testb and MSNBC, repeated to `--docs` documents
(JSONL, unique IDs). Each run is a fresh `python -m spacy_refined link`
process, timed end to end (start-up, pipeline load and Ray's start
included) and by its own summary (pipeline load included). Peak memory is
the largest sum, sampled every 0.2 s, of the proportional set size (PSS)
of the process and all its descendants (workers, Ray's processes), so that
pages shared between processes (the memory-mapped KB, forked memory) are
counted once. With `--trace`, each run's samples (seconds, PSS in MB,
documents written so far) go to DIR/MODE-DOCS.tsv: a trend over the run
shows there, where a peak alone mixes growth with the swings of the heap.
"""

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "el"
SOURCES = ("aida/testb.jsonl", "msnbc.jsonl")
MODES = {"local": [], "local-2": ["--n-process", "2"], "ray": ["--engine", "ray"]}


def corpus(directory: Path, data: Path, n_docs: int) -> Path:
    path = directory / f"corpus-{n_docs}.jsonl"
    if not path.exists():
        texts = [json.loads(line)["text"] for source in SOURCES for line in (data / source).open(encoding="utf8")]
        with path.open("w", encoding="utf8") as file_:
            for i in range(n_docs):
                file_.write(json.dumps({"id": f"d{i}", "text": texts[i % len(texts)]}) + "\n")
    return path


def descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def pss_mb(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def written(output: Path) -> int:
    """Documents in the finished shards of a `link` output folder so far."""
    total = 0
    for stats in output.glob("part-*.stats.json"):
        try:
            total += json.loads(stats.read_text()).get("linked", 0)
        except (OSError, ValueError):
            continue
    return total


def run(
    pipeline: Path, input_path: Path, output: Path, extra: List[str], trace: Optional[Path] = None
) -> Dict[str, float]:
    command = [sys.executable, "-m", "spacy_refined", "link", str(pipeline), str(input_path), "-o", str(output)]
    command += ["--no-progress", "--shard-size", "2000", *extra]
    peak = [0.0]
    samples: List[str] = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def sample() -> None:
        tick = 0
        while process.poll() is None:
            now = pss_mb(descendants(process.pid))
            peak[0] = max(peak[0], now)
            if trace is not None and tick % 5 == 0:  # once a second
                samples.append(f"{time.perf_counter() - started:.1f}\t{now:.0f}\t{written(output)}")
            tick += 1
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode:
        raise SystemExit(f"failed: {' '.join(command)}")
    if trace is not None:
        trace.write_text("seconds\tpss_mb\tdocs_written\n" + "\n".join(samples) + "\n")
    summary = json.loads((output / "summary.json").read_text())
    return {
        "docs": summary["linked"],
        "wall_s": wall,
        "docs_per_s": summary["linked"] / wall,
        "docs_per_s_after_start": summary["linked_now"] / summary["seconds"],
        "peak_pss_mb": peak[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    parser.add_argument("--memory-docs", default="10000,100000", help="corpus sizes for peak memory (one process)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data's el/ folder")
    parser.add_argument("--work", type=Path, default=Path("link-bench"), help="corpus and output files")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--trace", type=Path, help="write each run's memory over time to this folder")
    parser.add_argument("--link-args", default="", help="more options of every link run, e.g. '--batch-size 64'")
    args = parser.parse_args()
    flags = shlex.split(args.link_args)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)

    def trace(name: str) -> Optional[Path]:
        return args.trace / f"{name}.tsv" if args.trace else None

    results = {}
    for mode in [mode for mode in args.modes.split(",") if mode]:
        out = args.work / f"out-{mode}-{args.docs}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        results[mode] = run(
            args.pipeline,
            corpus(args.work, args.data, args.docs),
            out,
            MODES[mode] + flags,
            trace(f"{mode}-{args.docs}"),
        )
        print(mode, json.dumps(results[mode]), flush=True)
    for n_docs in [int(n) for n in args.memory_docs.split(",") if n]:
        out = args.work / f"out-memory-{n_docs}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        results[f"local-{n_docs}-docs"] = run(
            args.pipeline, corpus(args.work, args.data, n_docs), out, flags, trace(f"local-{n_docs}")
        )
        print(n_docs, json.dumps(results[f"local-{n_docs}-docs"]), flush=True)
    print("| run | docs | docs/s (end to end) | docs/s (after start-up) | peak PSS (MB) |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['docs']:,} | {r['docs_per_s']:.1f} | {r['docs_per_s_after_start']:.1f} | {r['peak_pss_mb']:,.0f} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
