"""`kb compact`: merge the segments of a KB into one.

Each `kb add` appends a segment, and each segment costs every lookup a
search and every open a few files; compaction writes one segment that
answers exactly as the many did (same global entity indices, the same
candidates in the same order, the same types, facts and embeddings), under
the KB's write lock, and replaces them by one manifest write.

The base segment is streamed in chunks, so memory stays bounded by the
added segments, which are small next to it: their aliases are merged with
the store's own rule (`RefinedKB.candidates_of_keys`) and inserted among the
base's in key order.
"""

import shutil
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..util import PathLike, concatenated_ranges, csr_gather
from .arrays import NpyAppender
from .builder import commit, writing
from .format import EMBEDDINGS_FILE, SEGMENT_ARRAYS, new_segment_name, segment_files, staging_directory
from .segment import Segment
from .store import RefinedKB

_CHUNK = 1 << 20


def compact_kb(kb_path: PathLike) -> Dict[str, int]:
    """Merge the segments of the KB at `kb_path` into one, atomically.

    kb_path (str / Path): The KB directory.
    RETURNS (Dict[str, int]): "segments" (before), "entities", and
        "embeddings_dropped" (1 when only some segments had embeddings, which
        the merged segment cannot hold: run `kb embed` again).
    """
    with writing(kb_path) as kb:
        before = len(kb.segments)
        if before == 1:
            return {"segments": 1, "entities": len(kb), "embeddings_dropped": 0}
        name = new_segment_name(kb.path, kb.manifest, "compact")
        with staging_directory(kb.path / name) as staging:
            counts = _merge(kb, staging)
            Segment(staging, 0)  # the structural checks, before the KB points to it
        manifest = dict(kb.manifest)
        manifest["segments"] = [{"name": name, **counts}]
        commit(kb, manifest, segment_files(kb.path, name))
        for segment in kb.segments:
            shutil.rmtree(segment.path, ignore_errors=True)
        dropped = int(
            any(s.embeddings is None for s in kb.segments) and any(s.embeddings is not None for s in kb.segments)
        )
        return {"segments": before, "entities": len(kb), "embeddings_dropped": dropped}


def _merge(kb: RefinedKB, out: Path) -> Dict[str, int]:
    """Write the merged segment of `kb` into `out`; returns its manifest counts."""
    segments = kb.segments
    base, added = segments[0], segments[1:]

    def appender(name: str) -> NpyAppender:
        return NpyAppender(out / SEGMENT_ARRAYS[name].file, SEGMENT_ARRAYS[name].dtype)

    # Entities: each array concatenated in segment order, CSR offsets shifted.
    for name in ("entity_ids", "labels", "descriptions", "entity_aliases", "entity_titles"):
        data = NpyAppender(out / f"{name}.data.npy", "uint8")
        offsets = NpyAppender(out / f"{name}.offsets.npy", "int64")
        _concatenate(data, [getattr(s, name).data for s in segments])
        _concatenate_offsets(offsets, [getattr(s, name).offsets for s in segments])
    for name, values in (("entity_alias_offsets", None), ("type_offsets", "type_values")):
        _concatenate_offsets(appender(name), [getattr(s, name) for s in segments])
        if values is not None:
            _concatenate(appender(values), [getattr(s, values) for s in segments])
    _concatenate(appender("popularity"), [s.popularity for s in segments])
    if all(s.embeddings is not None for s in segments):
        width = segments[0].embeddings.shape[1]
        embeddings = np.lib.format.open_memmap(out / EMBEDDINGS_FILE, "w+", np.float16, (len(kb), width))
        for segment in segments:
            for first in range(0, segment.n_entities, _CHUNK):
                rows = segment.embeddings[first : first + _CHUNK]
                embeddings[segment.start + first : segment.start + first + len(rows)] = rows
        embeddings.flush()
        del embeddings

    # Keys: the added segments' inserted among the base's; rows become global indices.
    def runs(keys: str, rows: str) -> Tuple[np.ndarray, np.ndarray]:
        return _stable_sorted(
            [getattr(s, keys) for s in added], [np.asarray(getattr(s, rows), np.int64) + s.start for s in added]
        )

    _merge_sorted(
        base.entity_keys,
        base.entity_key_rows,
        *runs("entity_keys", "entity_key_rows"),
        appender("entity_keys"),
        appender("entity_key_rows"),
    )
    # A title claimed twice goes to its first entity, as lookups across segments do.
    _merge_sorted(
        base.title_keys,
        base.title_key_rows,
        *runs("title_keys", "title_key_rows"),
        appender("title_keys"),
        appender("title_key_rows"),
        unique=True,
    )

    # Facts: by subject they are in segment order already; by object, merged.
    fact_starts = np.cumsum([0] + [len(s.fact_subjects) for s in segments])
    for name in ("fact_subjects", "fact_relations", "fact_objects"):
        _concatenate(appender(name), [getattr(s, name) for s in segments])
    extra_objects, extra_order = _stable_sorted(
        [s.fact_objects_sorted for s in added],
        [np.asarray(s.fact_object_order, np.int64) + start for s, start in zip(added, fact_starts[1:])],
    )
    _merge_sorted(
        base.fact_objects_sorted,
        base.fact_object_order,
        extra_objects,
        extra_order,
        appender("fact_objects_sorted"),
        appender("fact_object_order"),
    )

    n_aliases = _merge_candidates(kb, appender)
    return {"n_entities": len(kb), "n_aliases": n_aliases, "n_facts": int(fact_starts[-1])}


def _merge_candidates(kb: RefinedKB, appender) -> int:
    """Write the alias -> candidates table: the base's rows, where an added
    segment knows the alias too, replaced by the merged row."""
    base, added = kb.segments[0], kb.segments[1:]
    merged_keys = np.unique(np.concatenate([np.asarray(s.alias_keys) for s in added]))
    merged = kb.candidates_of_keys(merged_keys, kb.max_candidates)
    totals = np.zeros(len(merged_keys), dtype=np.float64)
    for segment in kb.segments:
        rows = segment.find_aliases(merged_keys)
        found = rows >= 0
        totals[found] += segment.alias_totals[rows[found]]
    merged_counts = merged.priors.astype(np.float64) * np.repeat(totals, np.diff(merged.offsets))
    keys_out, totals_out = appender("alias_keys"), appender("alias_totals")
    offsets_out, entities_out, counts_out = (
        appender("candidate_offsets"),
        appender("candidate_entities"),
        appender("candidate_counts"),
    )
    offsets_out.append(0)
    written = 0
    position = np.searchsorted(base.alias_keys, merged_keys, side="left")
    n = len(base.alias_keys)
    n_aliases = 0
    for first in range(0, max(n, 1), _CHUNK):
        last = min(first + _CHUNK, n)
        rows = np.arange(first, last)
        rows = rows[~np.isin(base.alias_keys[first:last], merged_keys)]
        extra = np.flatnonzero((position >= first) & ((position < last) | (last == n)))
        keys = np.concatenate([base.alias_keys[rows], merged_keys[extra]])
        alias_totals = np.concatenate([base.alias_totals[rows], totals[extra].astype(np.float32)])
        base_lengths, base_entities = csr_gather(base.candidate_offsets, base.candidate_entities, rows)
        _, base_counts = csr_gather(base.candidate_offsets, base.candidate_counts, rows)
        extra_lengths, extra_entities = csr_gather(merged.offsets, merged.entities, extra)
        _, extra_counts = csr_gather(merged.offsets, merged_counts, extra)
        lengths = np.concatenate([base_lengths, extra_lengths])
        entities = np.concatenate([base_entities.astype(np.int64), extra_entities])
        counts = np.concatenate([base_counts.astype(np.float64), extra_counts])
        order = np.argsort(keys, kind="stable")
        take = concatenated_ranges((np.cumsum(lengths) - lengths)[order], lengths[order])
        keys_out.extend(keys[order])
        totals_out.extend(alias_totals[order])
        offsets_out.extend(written + np.cumsum(lengths[order]))
        entities_out.extend(entities[take])
        counts_out.extend(counts[take])
        written += int(lengths.sum())
        n_aliases += len(keys)
    for writer in (keys_out, totals_out, offsets_out, entities_out, counts_out):
        writer.close()
    return n_aliases


def _concatenate(out: NpyAppender, arrays: Sequence[np.ndarray]) -> None:
    for values in arrays:
        for first in range(0, len(values), _CHUNK):
            out.extend(np.asarray(values[first : first + _CHUNK]))
    out.close()


def _concatenate_offsets(out: NpyAppender, arrays: Sequence[np.ndarray]) -> None:
    """CSR offsets of the concatenated rows: each array's, after the first 0, shifted by the values before."""
    out.append(0)
    shift = 0
    for offsets in arrays:
        for first in range(1, len(offsets), _CHUNK):
            out.extend(np.asarray(offsets[first : first + _CHUNK], dtype=np.int64) + shift)
        shift += int(offsets[-1])
    out.close()


def _stable_sorted(keys: List[np.ndarray], values: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """The runs concatenated and sorted by key, equal keys in run order."""
    keys_ = np.concatenate([np.asarray(k) for k in keys])
    order = np.argsort(keys_, kind="stable")
    return keys_[order], np.concatenate(values)[order]


def _merge_sorted(
    base_keys: np.ndarray,
    base_values: np.ndarray,
    extra_keys: np.ndarray,
    extra_values: np.ndarray,
    keys_out: NpyAppender,
    values_out: NpyAppender,
    unique: bool = False,
) -> None:
    """Write the sorted base (streamed) with the sorted extra inserted, base
    first among equal keys; `unique` keeps only the first of equal keys."""
    position = np.searchsorted(base_keys, extra_keys, side="right")
    n = len(base_keys)
    previous = None
    for first in range(0, max(n, 1), _CHUNK):
        last = min(first + _CHUNK, n)
        inside = (position >= first) & ((position < last) | (last == n))
        keys = np.insert(np.asarray(base_keys[first:last]), position[inside] - first, extra_keys[inside])
        values = np.insert(
            np.asarray(base_values[first:last], dtype=np.int64), position[inside] - first, extra_values[inside]
        )
        if unique and len(keys):
            keep = np.r_[previous is None or keys[0] != previous, keys[1:] != keys[:-1]]
            previous = keys[-1]
            keys, values = keys[keep], values[keep]
        keys_out.extend(keys)
        values_out.extend(values)
    keys_out.close()
    values_out.close()
