"""The transformer's windows on EL documents: how many, how many wordpieces
(real and padded) and the bare encoder's time, for several span getters,
interleaved in one run on the same machine.

    python benchmarks/windows_bench.py ENCODER DOCS.jsonl [--rounds 2] [--limit 0] [--threads 2]

ENCODER: a Hugging Face model directory or name. The encoder is timed as
`benchmarks/linker_bench.py` defines it: spaCy's tokenizer, then the
`transformer` component (Hugging Face tokenisation, windows, forward pass),
`batch_size` 32 and the component's own length-sorted sub-batches.
"""

import argparse
import json
import time
from pathlib import Path

import spacy
import torch

GETTERS = {
    "strided 128/96": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
    "strided 256/224": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 256, "stride": 224},
    "balanced 128/32": {"@span_getters": "spacy_refined.balanced_windows.v1", "window": 128, "overlap": 32},
    "balanced 256/32": {"@span_getters": "spacy_refined.balanced_windows.v1", "window": 256, "overlap": 32},
}


def build(encoder: str, get_spans: dict):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": encoder,
                "tokenizer_config": {"use_fast": True},
                "get_spans": get_spans,
            }
        },
    )
    nlp.initialize()
    transformer = nlp.get_pipe("transformer")
    hf_model = transformer.model.layers[0].shims[0]._model
    hf_model.eval()
    captured = []
    hf_model.register_forward_hook(
        lambda module, args, kwargs, output: captured.append(kwargs.get("attention_mask", args[0] if args else None)),
        with_kwargs=True,
    )
    return nlp, transformer, captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("encoder")
    parser.add_argument("docs", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--getters", default=",".join(GETTERS))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in args.docs.open(encoding="utf8")]
    texts = texts[: args.limit] if args.limit else texts
    systems = {name: build(args.encoder, GETTERS[name]) for name in args.getters.split(",")}
    results = {name: {"seconds": []} for name in systems}
    for _ in range(args.rounds):
        for name, (nlp, transformer, captured) in systems.items():
            captured.clear()
            started = time.perf_counter()
            with torch.no_grad():
                for _ in transformer.pipe(nlp.tokenizer.pipe(texts), batch_size=32):
                    pass
            results[name]["seconds"].append(time.perf_counter() - started)
            results[name].update(
                windows=sum(int(mask.shape[0]) for mask in captured),
                wordpieces=sum(int(mask.sum()) for mask in captured),
                padded=sum(int(mask.numel()) for mask in captured),
            )
    print(f"{len(texts)} documents, {args.threads} torch threads")
    print("| windows | count | wordpieces | padded | encoder s (best) | docs/s |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        best = min(r["seconds"])
        print(
            f"| {name} | {r['windows']:,} | {r['wordpieces']:,} | {r['padded']:,} | {best:.1f} | {len(texts) / best:.2f} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
