"""KB benchmark: build throughput, open time, candidate lookups/s, peak memory,
and a projection for the full Wikidata dump. Prints a Markdown report.

    python benchmarks/kb_bench.py [--data ../shared/data] [--processes 1 2]

Each build runs in a freshly spawned process so that its peak memory (max RSS) is its own.
"""

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Public, approximate figures for the full dumps that the projection rests on
# (Wikidata statistics and dump listings, 2025): stated, not measured here.
FULL_ITEMS = 115e6
FULL_JSON_BYTES = 1.7e12  # latest-all.json, uncompressed
FULL_FACTS = 800e6  # item-valued statements other than P31/P279
FULL_EVIDENCE_ROWS = 400e6  # English labels + aliases + enwiki anchor links + redirects
FULL_ENWIKI_XML_BYTES = 100e9  # enwiki pages-articles.xml, uncompressed
CORES = 16
WIKIPEDIA_SAMPLE_XML_BYTES = 6_089_746


def _build(send, wikidata: str, wikipedia: Optional[str], popularity: str, processes: int, output: str) -> None:
    """The body of `build_once`, in its own process: sends the timings and the process's peak RSS."""
    import resource

    from spacy_refined.kb.builder import KBBuilder

    t0 = time.perf_counter()
    with KBBuilder(output, progress=False) as builder:
        builder.add_wikidata(wikidata, processes=processes)
        t1 = time.perf_counter()
        if wikipedia is not None:
            builder.add_wikipedia(wikipedia)
        t2 = time.perf_counter()
        builder.add_popularity(popularity)
    t3 = time.perf_counter()
    send.send(
        {
            "wikidata_s": t1 - t0,
            "wikipedia_s": t2 - t1,
            "finish_s": t3 - t2,
            "total_s": t3 - t0,
            "entities": builder.stats["entities"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def build_once(wikidata: Path, wikipedia: Optional[Path], popularity: Path, processes: int, output: Path) -> dict:
    """Build in a fresh process (spawned, not forked: its peak RSS is its own); returns its timings and peak RSS."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    args = (send, str(wikidata), None if wikipedia is None else str(wikipedia), str(popularity), processes, str(output))
    process = context.Process(
        target=_build, args=args
    )  # not a Pool: its daemonic workers could not start the build's own
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    process.join()
    if result is None or process.exitcode != 0:
        raise RuntimeError(f"the build with {processes} process(es) failed (exit code {process.exitcode})")
    return result


def parse_rate_full_records(wikidata: Path, limit: int = 674) -> dict:
    """Parse throughput on full-size records (those carrying many languages), per process."""
    from spacy_refined.kb.wikidata import iter_dump_lines, parse_record

    big = []
    for _, line in iter_dump_lines(wikidata):
        if len(line) > 20_000:
            big.append(line)
            if len(big) >= limit:
                break
    start = time.perf_counter()
    for _ in range(3):
        for line in big:
            parse_record(line)
    seconds = (time.perf_counter() - start) / 3
    size = sum(len(line) for line in big)
    return {
        "records": len(big),
        "mean_bytes": size / max(len(big), 1),
        "records_per_s": len(big) / seconds,
        "mb_per_s": size / seconds / 1e6,
    }


def decompress_rate(wikidata: Path) -> dict:
    """bz2 decompression MB/s (of output): Python's bz2 and, where installed, lbzip2 on all cores."""
    import bz2
    import shutil

    rates = {}
    start = time.perf_counter()
    with bz2.open(wikidata, "rb") as f:
        size = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
    rates["python_bz2"] = size / (time.perf_counter() - start) / 1e6
    if shutil.which("lbzip2"):
        start = time.perf_counter()
        subprocess.run(["lbzip2", "-dc", str(wikidata)], stdout=subprocess.DEVNULL, check=True)
        rates[f"lbzip2_{os.cpu_count()}_cores"] = size / (time.perf_counter() - start) / 1e6
    return rates


def lookup_benchmark(kb_path: Path, n: int = 100_000) -> dict:
    from spacy_refined.kb import RefinedKB

    opens = []
    for _ in range(5):
        start = time.perf_counter()
        kb = RefinedKB.load(kb_path)
        opens.append(time.perf_counter() - start)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(kb), n)
    mentions = [kb.label(int(i)) or "unknown mention" for i in indices]
    # A realistic mix: a fifth of the mentions are misses or rarer spellings.
    for i in range(0, n, 5):
        mentions[i] = mentions[i].upper() + " Ltd"
    kb.candidates(mentions[:1000])  # warm the page cache
    timings = []
    for _ in range(3):
        from spacy_refined.kb.normalize import normalize_alias

        normalize_alias.cache_clear()
        start = time.perf_counter()
        batch = kb.candidates(mentions, k=30)
        timings.append(time.perf_counter() - start)
    hits = int((batch.lengths > 0).sum())
    return {
        "open_s_first": opens[0],
        "open_s_median": float(np.median(opens)),
        "mentions": n,
        "lookups_per_s": n / min(timings),
        "hit_rate": hits / n,
        "candidates": int(len(batch.entities)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    wikidata = args.data / "wikidata" / "mini-latest-all.json.bz2"
    wikipedia = args.data / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"
    popularity = args.data / "wikidata" / "pagerank.tsv.gz"
    if not wikidata.exists():
        sys.exit(f"error: {wikidata} not found (pass --data)")
    print(
        f"# KB benchmark — {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        builds = {}
        for processes in args.processes:
            builds[processes] = build_once(wikidata, wikipedia, popularity, processes, Path(tmp) / f"kb{processes}")
        print(
            "## Build (mini dump: 71,771 items + 722 properties, 83 MB JSON, 8.3 MB bz2; + Wikipedia sample + PageRank)\n"
        )
        print(
            "| processes | Wikidata pass s | Wikipedia pass s | finish s | total s | entities/s | entities/s per process | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for processes, b in builds.items():
            rate = b["entities"] / b["wikidata_s"]
            print(
                f"| {processes} | {b['wikidata_s']:.2f} | {b['wikipedia_s']:.2f} | {b['finish_s']:.2f} | {b['total_s']:.2f} "
                f"| {b['entities'] / b['total_s']:,.0f} | {rate / processes:,.0f} (Wikidata pass) | {b['peak_rss_mb']:.0f} |"
            )
        lookups = lookup_benchmark(Path(tmp) / f"kb{args.processes[0]}")
        kb_bytes = sum(p.stat().st_size for p in (Path(tmp) / f"kb{args.processes[0]}").rglob("*") if p.is_file())
        print("\n## Open and lookup\n")
        print(
            f"- open: first {lookups['open_s_first'] * 1000:.1f} ms, median of 5 {lookups['open_s_median'] * 1000:.1f} ms"
        )
        print(
            f"- candidates for a batch of {lookups['mentions']:,} mentions (k=30): {lookups['lookups_per_s']:,.0f} lookups/s "
            f"(hit rate {lookups['hit_rate']:.0%}, {lookups['candidates']:,} candidates)"
        )
    full = parse_rate_full_records(wikidata)
    decompress = decompress_rate(wikidata)
    writes_per_s = main_process_rate(wikidata)
    print("\n## Rates behind the projection\n")
    print(
        f"- parsing full-size records ({full['records']} records of mean {full['mean_bytes'] / 1000:.0f} kB, all languages): "
        f"{full['records_per_s']:,.0f} records/s = {full['mb_per_s']:.1f} MB/s per process"
    )
    print(f"- main process writing entity columns and evidence: {writes_per_s:,.0f} entities/s")
    for name, rate in decompress.items():
        print(f"- bz2 decompression ({name}): {rate:.0f} MB/s of JSON")
    one = builds[args.processes[0]]
    xml_mb_per_s = WIKIPEDIA_SAMPLE_XML_BYTES / one["wikipedia_s"] / 1e6
    print(f"- Wikipedia XML pass: {xml_mb_per_s:.1f} MB/s of XML (one process)")

    lbzip2 = [v for k, v in decompress.items() if k.startswith("lbzip2")]
    decompress_per_core = (lbzip2[0] / (os.cpu_count() or 1)) if lbzip2 else decompress["python_bz2"]
    core_seconds = FULL_JSON_BYTES / (decompress_per_core * 1e6) + FULL_JSON_BYTES / (full["mb_per_s"] * 1e6)
    wikidata_h = max(core_seconds / (CORES - 1), FULL_ITEMS / writes_per_s) / 3600
    wikipedia_h = FULL_ENWIKI_XML_BYTES / (xml_mb_per_s * 1e6) / 3600
    scale = FULL_ITEMS / one["entities"]
    finish_h = one["finish_s"] * scale * np.log(FULL_ITEMS) / np.log(one["entities"]) / 3600
    print(f"\n## Projection for the full dumps ({CORES} cores)\n")
    print(
        f"Assumed (public figures, approximate): {FULL_ITEMS / 1e6:.0f}M items, {FULL_JSON_BYTES / 1e12:.1f} TB of Wikidata JSON, "
        f"{FULL_FACTS / 1e6:.0f}M item-valued facts, {FULL_EVIDENCE_ROWS / 1e6:.0f}M alias evidence rows, "
        f"{FULL_ENWIKI_XML_BYTES / 1e9:.0f} GB of enwiki XML.\n"
    )
    print("| stage | how it scales | hours |")
    print("|---|---|---|")
    print(
        f"| Wikidata pass | lbzip2 + parsing on {CORES - 1} cores, main process writing in parallel | {wikidata_h:.2f} |"
    )
    print(f"| Wikipedia pass | one process, {xml_mb_per_s:.0f} MB/s of XML | {wikipedia_h:.2f} |")
    print(f"| finish (index, types, facts, priors) | mini-dump finish x n log n | {finish_h:.2f} |")
    print(f"| **total** | | **{wikidata_h + wikipedia_h + finish_h:.1f}** |")
    disk = kb_bytes / one["entities"] * FULL_ITEMS + FULL_FACTS * 24
    temp = FULL_EVIDENCE_ROWS * 21 + FULL_FACTS * 16 + FULL_ITEMS * 40
    ram = max(FULL_FACTS * 16, FULL_ITEMS * 24, FULL_EVIDENCE_ROWS / 64 * 21 * 6) + 2e9
    print(
        f"\nDisk: KB {disk / 1e9:.0f} GB ({kb_bytes / one['entities']:.0f} B per entity measured + 24 B per fact), "
        f"plus {temp / 1e9:.0f} GB of temporary files during the build."
    )
    print(
        f"RAM: peak {ram / 1e9:.0f} GB, set by the by-object sort of the facts (16 B per fact); "
        f"the entity-ID index takes 24 B per entity, an evidence bucket 1/64 of the rows; ~2 GB for the subclass graph."
    )


def main_process_rate(wikidata: Path) -> float:
    """Entities/s the main process writes (parsing excluded): the serial part of a parallel build."""
    from spacy_refined.kb.builder import EntityRecord, SegmentWriter
    from spacy_refined.kb.wikidata import read_wikidata

    records = [r for r in read_wikidata(wikidata) if r.kind == "item"]
    with tempfile.TemporaryDirectory() as tmp:
        writer = SegmentWriter(Path(tmp) / "segment", Path(tmp) / "work", 0, 64)
        start = time.perf_counter()
        for r in records:
            writer.add_entity(EntityRecord.from_wikidata(r))
        writer.close()
        return len(records) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
