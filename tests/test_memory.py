"""Memory bounded by configuration, not by input: a batch's long document
costs its own tokens (not its length times the batch size), and the KB
builder's type inventory streams with bounded caches."""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

from spacy_refined.kb import KBError
from spacy_refined.kb import arrays as kb_arrays
from spacy_refined.kb import builder as kb_builder
from spacy_refined.kb import format as kb_format
from spacy_refined.kb.builder import KBBuilder
from spacy_refined.kb.format import BASE_SEGMENT, SEGMENT_ARRAYS
from spacy_refined.model.bio import best_tags
from spacy_refined.model.heads import DocumentContext
from spacy_refined.util import time_major_order


def test_time_major_order_is_the_packed_sequence_layout():
    lengths = np.array([3, 0, 7, 1, 5])
    tokens = torch.arange(int(lengths.sum()), dtype=torch.float32).unsqueeze(1)
    packed = torch.nn.utils.rnn.pack_sequence(list(torch.split(tokens, lengths[lengths > 0].tolist())), False)
    order, batch_sizes = time_major_order(lengths)
    assert batch_sizes.tolist() == packed.batch_sizes.tolist()
    assert order.tolist() == [int(v) for v in packed.data.squeeze(1)]
    assert sorted(order.tolist()) == list(range(int(lengths.sum())))
    assert [len(a) for a in time_major_order(np.zeros(0, dtype=np.int64))] == [0, 0]


def random_log_probs(n_tokens: int, n_tags: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.log(rng.dirichlet(np.ones(n_tags), size=n_tokens)).astype("float32")


def test_best_tags_of_a_batch_are_those_of_each_document():
    rng = np.random.default_rng(0)
    for seed in range(20):
        lengths = rng.integers(0, 40, size=rng.integers(1, 10))
        log_probs = random_log_probs(int(lengths.sum()), 7, seed)
        tags = best_tags(log_probs, lengths)
        offsets = np.cumsum(lengths) - lengths
        alone = [best_tags(log_probs[o : o + n], np.array([n])) for o, n in zip(offsets, lengths)]
        assert tags.tolist() == np.concatenate([np.zeros(0, dtype=np.int64)] + alone).tolist()


def test_best_tags_memory_is_linear_in_the_batch_tokens():
    """One 20k-token document among 255 short ones: padding every document to
    the longest took 256 x 20k x 9 x 12 bytes (550 MB)."""
    lengths = np.array([20_000] + [10] * 255)
    log_probs = random_log_probs(int(lengths.sum()), 9)
    tracemalloc.start()
    try:
        best_tags(log_probs, lengths)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * len(log_probs)  # bytes per token


def test_document_context_of_a_batch_is_that_of_each_document():
    torch.manual_seed(0)
    context = DocumentContext(8, 5).eval()
    lengths = torch.tensor([4, 0, 9, 1, 9])
    tokens = torch.randn(int(lengths.sum()), 8)
    with torch.no_grad():
        batch = context(tokens, lengths)
        alone = torch.cat([context(t, torch.tensor([len(t)])) for t in torch.split(tokens, lengths.tolist()) if len(t)])
    assert batch.shape == (len(tokens), 8 + 10)
    assert torch.allclose(batch, alone, atol=1e-6)
    assert context(tokens[:0], torch.tensor([0, 0])).shape == (0, 18)


LSTM_MEMORY = """
import resource, sys, torch
from spacy_refined.model.heads import DocumentContext
torch.set_num_threads(1)
context = DocumentContext(96, 64).eval()
def run(lengths):
    with torch.no_grad():
        context(torch.randn(sum(lengths), 96), torch.tensor(lengths))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = run([10] * 256)
print(run([10_000] + [10] * 255) - before)
"""


def test_document_context_memory_does_not_scale_with_the_longest_document():
    """One 10k-token document among 255 short ones: padding every document to
    the longest took 256 x 10k x (96 + 128) x 4 bytes (2.3 GB) and more."""
    growth_mb = float(subprocess.run([sys.executable, "-c", LSTM_MEMORY], capture_output=True, check=True).stdout)
    assert growth_mb < 150


def build_with_classes(path, cache_size: int, monkeypatch) -> dict:
    """Build a KB with a class hierarchy (types closed over subclass-of) and read its array files."""
    monkeypatch.setattr(kb_builder, "TYPE_CACHE_SIZE", cache_size)
    rng = np.random.default_rng(0)
    with KBBuilder(path, n_types=30, min_type_count=1, progress=False) as builder:
        for q in range(1, 41):
            parents = [f"C{p}" for p in sorted(set(rng.integers(1, q, size=2).tolist()))] if q > 1 else []
            builder.writer.add_entity(kb_builder.EntityRecord(id=f"C{q}", label=f"class {q}", subclass_of=parents))
        for q in range(400):
            types = [f"C{t}" for t in sorted(set(rng.integers(1, 41, size=rng.integers(0, 4)).tolist()))]
            builder.writer.add_entity(kb_builder.EntityRecord(id=f"Q{q}", label=f"item {q}", types=types))
    files = {name: (path / BASE_SEGMENT / spec.file).read_bytes() for name, spec in SEGMENT_ARRAYS.items()}
    return {**files, "types": (path / "types.json").read_bytes()}


@pytest.mark.parametrize("cache_size", [1, 4])
def test_type_inventory_caches_bound_memory_not_results(tmp_path, monkeypatch, cache_size):
    """The closures of classes and combinations are cached up to a bound; a
    tiny cache gives the same KB, byte for byte."""
    unbounded = build_with_classes(tmp_path / "unbounded", 1 << 20, monkeypatch)
    assert build_with_classes(tmp_path / "bounded", cache_size, monkeypatch) == unbounded
    assert unbounded["types"].count(b'"id"') == 30


@pytest.mark.parametrize(
    "n,chunk,block", [(0, 4, 4), (1, 4, 4), (1000, 64, 16), (1000, 7, 3), (1000, 1 << 18, 1 << 18)]
)
def test_sorted_blocks_is_a_stable_argsort(tmp_path, monkeypatch, n, chunk, block):
    """Sorting out of memory, in runs merged block by block, gives the
    order of a stable argsort: ties in their input order, zeros skipped on request."""
    monkeypatch.setattr(kb_arrays, "SORT_CHUNK", chunk)
    monkeypatch.setattr(kb_arrays, "MERGE_BLOCK", block)
    keys = np.random.default_rng(n).integers(0, 30, n).astype(np.uint64)
    for skip_zero in (False, True):
        blocks = list(kb_arrays.sorted_blocks(keys, tmp_path / "sort", skip_zero=skip_zero))
        rows = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, np.int64)
        candidates = np.flatnonzero(keys) if skip_zero else np.arange(n)
        expected = candidates[np.argsort(keys[candidates], kind="stable")]
        assert rows.tolist() == expected.tolist()
        assert np.concatenate([b[0] for b in blocks] or [keys[:0]]).tolist() == keys[expected].tolist()
    assert not (tmp_path / "sort").exists() or not any((tmp_path / "sort").iterdir()), "runs left behind"


def build_streamed(path, records, monkeypatch, small: bool, popularity=None) -> dict:
    """Build a KB, with the builder's buffers and sort runs tiny (`small`) or as shipped; its files' bytes."""
    if small:
        for module, name, value in (
            (kb_arrays, "_FLUSH_ITEMS", 5),
            (kb_arrays, "SORT_CHUNK", 16),
            (kb_arrays, "MERGE_BLOCK", 6),
            (kb_builder, "CHUNK", 8),
        ):
            monkeypatch.setattr(module, name, value)
    with KBBuilder(path, n_types=10, min_type_count=1, progress=False) as builder:
        for record in records:
            builder.writer.add_entity(record)
        if popularity is not None:
            builder.add_popularity(popularity)
    monkeypatch.undo()
    return {
        name: (path / name).read_bytes()
        for name in sorted(kb_format.kb_files(path, {"segments": [{"name": BASE_SEGMENT}]}))
    }


def test_builder_memory_bounds_do_not_change_the_kb(tmp_path, monkeypatch):
    """The indexes by key, the title index (a title claimed twice goes to its
    first entity), the facts by object and the popularity ranks, sorted in
    runs of 16 and merged 6 at a time: the same KB, byte for byte."""
    rng = np.random.default_rng(1)
    records = [
        kb_builder.EntityRecord(
            id=f"Q{q}",
            label=f"name {q % 37}",
            aliases=[f"alias {q % 11}"],
            types=[f"Q{1 + q % 5}"],
            facts=[("P17", f"Q{int(rng.integers(1, 300))}")] * int(rng.integers(0, 3)),
            popularity=None if q % 3 else float(rng.integers(0, 5)),
            sitelinks=int(rng.integers(0, 4)),
            title=f"Page {q % 40}" if q % 4 else None,
        )
        for q in rng.permutation(np.arange(1, 301)).tolist()
    ]
    scores = tmp_path / "scores.tsv"
    scores.write_text("".join(f"Q{q}\t{q % 7}\n" for q in range(1, 200, 2)))
    for popularity in (None, scores):
        shipped = build_streamed(tmp_path / "shipped", records, monkeypatch, small=False, popularity=popularity)
        assert build_streamed(tmp_path / "small", records, monkeypatch, small=True, popularity=popularity) == shipped


def test_duplicate_id_found_across_sort_runs(tmp_path, monkeypatch):
    records = [kb_builder.EntityRecord(id=f"Q{q}") for q in range(1, 100)] + [kb_builder.EntityRecord(id="Q7")]
    with pytest.raises(KBError, match="entity ID 'Q7' occurs more than once"):
        build_streamed(tmp_path / "kb", records, monkeypatch, small=True)


def test_release_unmaps_pages_read_and_keeps_the_values(tmp_path):
    """A file scanned through its map holds only what was read since the last release."""

    def rss_mb() -> float:
        status = open("/proc/self/status").read()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    kb_arrays.save_array(tmp_path / "big.npy", np.arange(1 << 24, dtype=np.int64))  # 128 MB
    values = kb_arrays.load_array(tmp_path / "big.npy")
    total = int(values.sum())
    read = rss_mb()
    kb_arrays.release(values)
    assert read - rss_mb() > 100
    assert int(values.sum()) == total
