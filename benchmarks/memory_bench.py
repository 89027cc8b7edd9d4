"""Memory benchmark: peak RSS of KB builds as the input grows, and of `nlp.pipe`
with one long document among short ones. Prints one JSON object per run.

    python benchmarks/memory_bench.py build --items 300000 1000000 3000000
    python benchmarks/memory_bench.py pipe --long-tokens 200000 --short 255 --batch-size 256

Each run is a child process whose RSS the parent samples: it is killed once it
passes `--limit-gb`, so a run that would exhaust the machine reports
"killed" instead. Builds read a synthetic Wikidata dump written to a temporary
directory (deleted afterwards): a fixed class hierarchy and items whose
`instance of` combinations, aliases, facts and sitelinks are drawn at random,
so that the number of distinct type combinations grows with the items.
Pipelines are trained for a few steps on the tests' tiny KB (no downloads).
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import orjson

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 20_000  # the first items are classes (subclass of earlier ones), whatever the dump's size


def synthetic_dump(path: Path, n_items: int, seed: int = 0) -> None:
    """Write a Wikidata JSON dump of `n_items` items (see the module docstring)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(50_000)]

    def claims(prop: str, targets: List[int]) -> List[Dict[str, Any]]:
        return [
            {
                "mainsnak": {
                    "snaktype": "value",
                    "datatype": "wikibase-item",
                    "datavalue": {"value": {"id": f"Q{t}"}},
                },
                "rank": "normal",
            }
            for t in targets
        ]

    with path.open("wb") as f:
        f.write(b"[\n")
        for q in range(1, n_items + 1):
            label = " ".join(rng.choices(words, k=rng.randint(1, 3)))
            aliases = [" ".join(rng.choices(words, k=2)) for _ in range(rng.randint(0, 3))]
            item_claims = {}
            if q <= N_CLASSES:
                if q > 1:
                    # A random recursive tree (depth ~ log q), a second parent for some classes.
                    parents = {rng.randint(1, q - 1) for _ in range(1 if rng.random() < 0.8 else 2)}
                    item_claims["P279"] = claims("P279", sorted(parents))
            else:
                # Zipf-like class choice: a few classes are common, most combinations are rare.
                n_types = rng.choice((1, 1, 2, 3))
                item_claims["P31"] = claims("P31", sorted({int(N_CLASSES ** rng.random()) for _ in range(n_types)}))
            item_claims["P17"] = claims("P17", [rng.randint(1, n_items)])
            if rng.random() < 0.5:
                item_claims["P361"] = claims("P361", [rng.randint(1, n_items)])
            n_sitelinks = rng.randint(0, 5)
            item = {
                "type": "item",
                "id": f"Q{q}",
                "labels": {"en": {"language": "en", "value": label}},
                "descriptions": {"en": {"language": "en", "value": f"synthetic item {q}"}},
                "aliases": {"en": [{"language": "en", "value": a} for a in aliases]},
                "claims": item_claims,
                "sitelinks": {f"wiki{i}": {"title": f"{label} {q}"} for i in range(n_sitelinks)}
                | ({"enwiki": {"title": f"{label} {q}"}} if n_sitelinks else {}),
            }
            f.write(orjson.dumps(item) + (b",\n" if q < n_items else b"\n"))
        f.write(b"]\n")


def build_child(dump: str, output: str) -> None:
    import resource

    from spacy_refined.kb.builder import KBBuilder

    started = time.perf_counter()
    with KBBuilder(output, progress=False) as builder:
        builder.add_wikidata(dump)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), **builder.stats, "peak_mb": round(peak)}))


def train_pipeline(output: Path) -> None:
    """A pipeline trained for a few steps on the tests' tiny KB and records, saved to `output`."""
    sys.path.insert(0, str(ROOT / "tests"))
    import spacy
    from conftest import ENTITIES, RECORDS, add_linker, build_kb
    from spacy.training import Example

    from spacy_refined.training import docs_from_jsonl

    spacy.util.fix_random_seed(0)
    kb_path = build_kb(output.parent / "tiny-kb", ENTITIES)
    nlp = spacy.blank("en")
    add_linker(nlp, kb_path, config={"extra_labels": ["DATE"]})
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs_from_jsonl(nlp, RECORDS)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(output)


def pipe_child(pipeline: str, long_tokens: int, n_short: int, batch_size: int) -> None:
    import resource

    import spacy

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import RECORDS

    nlp = spacy.load(pipeline)
    words = " ".join(record["text"] for record in RECORDS).split()
    short = [RECORDS[i % len(RECORDS)]["text"] for i in range(n_short)]
    long_text = " ".join(words[i % len(words)] for i in range(long_tokens))
    nlp.max_length = max(nlp.max_length, len(long_text) + 1)
    list(nlp.pipe(short[:8]))  # warm up: the baseline includes the model and the KB
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    docs = list(nlp.pipe([long_text] + short, batch_size=batch_size))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "long_tokens": len(docs[0]),
                "short_docs": n_short,
                "batch_size": batch_size,
                "entities": sum(len(doc.ents) for doc in docs),
                "seconds": round(time.perf_counter() - started, 1),
                "baseline_mb": round(baseline),
                "peak_mb": round(peak),
            }
        )
    )


def watch(command: List[str], limit_gb: float) -> Dict[str, Any]:
    """Run `command`, sampling its RSS; kill it past `limit_gb`. Its JSON line, with the peak RSS seen."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            rss = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            rss = 0
        peak = max(peak, rss)
        if rss > limit_gb * 1024**2:
            process.kill()
            process.wait()
            return {"killed": f"RSS passed {limit_gb} GB", "peak_mb": round(peak / 1024)}
        time.sleep(0.1)
    out = process.stdout.read().decode().strip().splitlines()
    if process.returncode or not out:
        return {"failed": process.returncode}
    return {**json.loads(out[-1]), "sampled_peak_mb": round(peak / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="peak RSS of KB builds of synthetic dumps")
    build.add_argument("--items", type=int, nargs="+", default=[300_000, 1_000_000, 3_000_000])
    build.add_argument(
        "--dump-dir", type=Path, help="keep the synthetic dumps here and reuse them (default: temporary)"
    )
    build.add_argument("--keep-kb", type=Path, help="keep each KB as DIR/kb-ITEMS (e.g. to compare builds)")
    pipe = commands.add_parser("pipe", help="peak RSS of nlp.pipe with one long document")
    pipe.add_argument("--pipeline", type=Path, help="a saved pipeline (default: train one on the tiny KB)")
    pipe.add_argument("--long-tokens", type=int, nargs="+", default=[200_000])
    pipe.add_argument("--short", type=int, default=255, help="short documents after the long one")
    pipe.add_argument("--batch-size", type=int, nargs="+", default=[256])
    for command in (build, pipe):
        command.add_argument("--limit-gb", type=float, default=8.0, help="kill a run whose RSS passes this")
    commands.add_parser("_build").add_argument("args", nargs=2)
    commands.add_parser("_pipe").add_argument("args", nargs=4)
    args = parser.parse_args()
    if args.command == "_build":
        build_child(*args.args)
    elif args.command == "_pipe":
        pipeline, *numbers = args.args
        pipe_child(pipeline, *map(int, numbers))
    elif args.command == "build":
        for n in args.items:
            with tempfile.TemporaryDirectory() as tmp:
                dump = (args.dump_dir or Path(tmp)) / f"synthetic-{n}.json"
                if not dump.exists():
                    dump.parent.mkdir(parents=True, exist_ok=True)
                    synthetic_dump(dump.with_suffix(".partial"), n)
                    dump.with_suffix(".partial").rename(dump)
                kb = args.keep_kb / f"kb-{n}" if args.keep_kb else Path(tmp) / "kb"
                result = watch([sys.executable, __file__, "_build", str(dump), str(kb)], args.limit_gb)
                print(json.dumps({"items": n, "dump_mb": round(dump.stat().st_size / 1e6), **result}), flush=True)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pipeline = args.pipeline
            if pipeline is None:
                pipeline = Path(tmp) / "pipeline"
                train_pipeline(pipeline)
            for tokens in args.long_tokens:
                for batch_size in args.batch_size:
                    command = [sys.executable, __file__, "_pipe", str(pipeline), str(tokens), str(args.short)]
                    print(json.dumps(watch(command + [str(batch_size)], args.limit_gb)), flush=True)


if __name__ == "__main__":
    main()
