"""What the KB alias matcher costs: docs/s of a trained pipeline with the
tagger's mentions alone and with the alias matches added, timed in turns in
one process (so that the load of a shared machine falls on both alike), the
matcher's own time per document, and what it holds in memory.

    python matcher_bench.py PIPELINE DOCUMENTS.jsonl [--repeat 3] [--output out.json]
"""

import json
import resource
import time
from pathlib import Path
from typing import Optional

import numpy as np
import spacy
import typer

from spacy_refined.evaluation.formats import read_documents
from spacy_refined.kb.matcher import AliasMatcher
from spacy_refined.pipeline.mentions import MENTION_SOURCES


def main(
    pipeline: Path,
    documents: Path,
    repeat: int = typer.Option(3, help="Timed passes per mention source, in turns"),
    batch_size: int = typer.Option(32, help="Documents per batch"),
    output: Optional[Path] = typer.Option(None, help="Write the figures as JSON here"),
) -> None:
    texts = [record["text"] for record in read_documents(documents, "auto", None)]
    pipelines = {
        name: spacy.load(pipeline, config={"components": {"refined_linker": {"mentions": MENTION_SOURCES[name]}}})
        for name in ("tagger", "tagger+aliases")
    }
    for nlp in pipelines.values():
        list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm up
    seconds = {name: [] for name in pipelines}
    for _ in range(repeat):
        for name, nlp in pipelines.items():
            started = time.perf_counter()
            list(nlp.pipe(texts, batch_size=batch_size))
            seconds[name].append(time.perf_counter() - started)
    nlp = pipelines["tagger"]
    kb = nlp.get_pipe("refined_kb").kb
    docs = [nlp.make_doc(text) for text in texts]
    matcher = AliasMatcher()
    matcher(kb, docs[:batch_size])
    started = time.perf_counter()
    for start in range(0, len(docs), batch_size):
        matcher(kb, docs[start : start + batch_size])
    matcher_seconds = time.perf_counter() - started
    docs_per_s = {name: len(texts) / float(np.median(times)) for name, times in seconds.items()}
    n_aliases = sum(len(segment.alias_keys) for segment in kb.segments)
    result = {
        "documents": len(texts),
        "tokens": sum(len(doc) for doc in docs),
        "docs_per_s": docs_per_s,
        "cost_share": 1.0 - docs_per_s["tagger+aliases"] / docs_per_s["tagger"],
        "matcher_ms_per_doc": 1000 * matcher_seconds / len(docs),
        "matcher_share_of_tagger_pipeline": (matcher_seconds / len(docs)) * docs_per_s["tagger"],
        "kb_aliases": n_aliases,
        "alias_key_bytes": 8 * n_aliases,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    if output is not None:
        output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    typer.run(main)
