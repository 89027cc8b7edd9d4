"""Linker speed: docs/s and mentions/s of a trained pipeline on EL documents,
with the bare encoder's forward time on the same documents beside it.

    python benchmarks/linker_bench.py PIPELINE DOCS.jsonl [--gpu-id 0] [--repeats 3] [--gemm blis] [--output REPORT.md]

The encoder is the pipeline's `transformer` component when there is one, else
the linker's own tok2vec layer. "Overhead" is everything but the encoder:
mention detection, candidate lookup, typing, scoring and writing the Doc.
"""

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path

import spacy
import srsly
from thinc.api import NumpyOps, set_current_ops

from spacy_refined.cli.evaluate import GEMM
from spacy_refined.pipeline.linker import find_linker


def best_time(run, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("docs", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use the first N documents only")
    parser.add_argument("--gemm", choices=GEMM, default="numpy", help="CPU matrix products, as in `evaluate --gemm`")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--output", type=Path, help="write the report here (default: print it)")
    args = parser.parse_args()
    if args.output:
        with args.output.open("w", encoding="utf8") as file, contextlib.redirect_stdout(file):
            report(args)
    else:
        report(args)


def report(args: argparse.Namespace) -> None:
    """Time the encoder and the whole pipeline; print the Markdown report."""
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    else:
        set_current_ops(NumpyOps(use_blis=args.gemm == "blis"))
    nlp = spacy.load(args.pipeline)
    linker = find_linker(nlp)
    texts = [record["text"] for record in srsly.read_jsonl(args.docs)]
    if args.limit:
        texts = texts[: args.limit]
    n_tokens = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    list(nlp.pipe(texts[:8], batch_size=args.batch_size))  # warm up (and fill the embedding cache once)

    def full() -> None:
        full.n_mentions = sum(len(doc.ents) for doc in nlp.pipe(texts, batch_size=args.batch_size))

    if "transformer" in nlp.pipe_names:
        transformer = nlp.get_pipe("transformer")
        encoder_name = f"transformer ({transformer.model.attrs.get('name', '?')})"

        def encoder() -> None:
            for _ in transformer.pipe(nlp.tokenizer.pipe(texts), batch_size=args.batch_size):
                pass
    else:
        tok2vec = linker.model.get_ref("tok2vec")
        encoder_name = "tok2vec (inline HashEmbedCNN)"

        def encoder() -> None:
            docs = list(nlp.tokenizer.pipe(texts))
            for start in range(0, len(docs), args.batch_size):
                tok2vec.predict(docs[start : start + args.batch_size])

    encoder_s = best_time(encoder, args.repeats)
    full_s = best_time(full, args.repeats)
    import torch

    device = (
        f"GPU {args.gpu_id}"
        if args.gpu_id >= 0
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {args.gemm} matrix products)"
    )
    print(
        f"# Linker speed — {args.pipeline} on {args.docs.name} ({len(texts)} docs, {n_tokens:,} tokens), "
        f"{device}, {platform.node()}, {time.strftime('%Y-%m-%d')}, best of {args.repeats}\n"
    )
    print("| what | seconds | docs/s | tokens/s | mentions/s |")
    print("|---|---|---|---|---|")
    print(
        f"| bare encoder: {encoder_name} | {encoder_s:.2f} | {len(texts) / encoder_s:,.0f} | {n_tokens / encoder_s:,.0f} | |"
    )
    print(
        f"| full pipeline (nlp.pipe, batch {args.batch_size}) | {full_s:.2f} | {len(texts) / full_s:,.0f} | "
        f"{n_tokens / full_s:,.0f} | {full.n_mentions / full_s:,.0f} |"
    )
    print(
        f"\nEverything but the encoder adds {100 * (full_s - encoder_s) / encoder_s:.0f}% to the encoder's time "
        f"({full.n_mentions:,} mentions linked; KB embeddings {'precomputed' if linker.kb.has_embeddings else 'computed on the fly, cached'})."
    )


if __name__ == "__main__":
    main()
