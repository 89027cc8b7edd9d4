"""The KB reader: a KB directory of memory-mapped segments, read without spaCy.

`KBReader` answers everything a KB holds (entities, names, types, facts,
candidates by prior, embeddings) with numpy only, so that a command such as
`kb lookup` starts in a fraction of a second; `store.RefinedKB` is this
reader made a spaCy `KnowledgeBase`, for pipelines. Keys are computed by
`hashing.string_key`, equal to spaCy's string hash that the builder uses.
`KBReader.reload` shows a reader what was written to its directory since it
was opened.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..util import PathLike, concatenated_ranges, csr_gather, sorted_positions
from .errors import KBError, UnknownEntityError
from .format import (
    DEFAULT_MAX_CANDIDATES,
    EMBEDDINGS_FILE,
    MANIFEST,
    RELATIONS_FILE,
    TYPES_FILE,
    directory_nbytes,
    file_sha256,
    kb_files,
    read_json_file,
    read_manifest,
    type_inventory_hash,
)
from .hashing import string_key
from .normalize import alias_keys, normalize_title
from .segment import Segment


@dataclass
class CandidateCSR:
    """Candidates of a batch of mentions in CSR form (best first within each mention)."""

    offsets: np.ndarray  # int64, len = n_mentions + 1
    entities: np.ndarray  # int64 global entity indices
    priors: np.ndarray  # float32 P(entity | mention)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[i], self.offsets[i + 1]
        return self.entities[start:end], self.priors[start:end]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_rows(cls, rows: Sequence[Tuple[np.ndarray, np.ndarray]]) -> "CandidateCSR":
        """The CSR of per-mention (entities, priors) rows."""
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(e) for e, _ in rows], out=offsets[1:])
        entities = np.concatenate([e for e, _ in rows]).astype(np.int64) if rows else np.zeros(0, np.int64)
        priors = np.concatenate([p for _, p in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
        return cls(offsets, entities, priors)


class KBReader:
    """A knowledge base of entities, aliases, types and facts, opened by mmap."""

    def __init__(self, path: Optional[PathLike] = None, entity_vector_length: int = 0) -> None:
        self._vector_length = entity_vector_length  # the embeddings' width once a KB is open
        self.path: Optional[Path] = None
        self.manifest: Dict[str, Any] = {}
        self.segments: List[Segment] = []
        self.type_ids: List[str] = []
        self.type_labels: List[str] = []
        self.relation_ids: List[str] = []
        self.relation_labels: List[str] = []
        self.max_candidates = DEFAULT_MAX_CANDIDATES
        self.person_type_index = -1  # the type of people in `type_ids` (-1: none), for the person-name rule
        if path is not None:
            self._open(Path(path))

    # ------------------------------------------------------------------ opening

    @classmethod
    def load(cls, path: PathLike) -> "KBReader":
        """Open the KB at `path` (instantly: arrays are memory-mapped)."""
        return cls(path=path)

    def reload(self) -> None:
        """Re-open the KB's directory, to see what was written to it since it
        was opened (segments appended by `kb.builder.append_segment`)."""
        if self.path is None:
            raise KBError("cannot reload an empty KB: it has no directory")
        self._open(self.path)

    def _open(self, path: Path) -> None:
        manifest = read_manifest(path)
        try:
            segments = self._open_segments(path, manifest)
        except KBError:
            # A writer (`kb compact`) may have replaced the segments since the
            # manifest was read: a manifest that changed meanwhile is read again.
            if read_manifest(path) == manifest:
                raise
            manifest = read_manifest(path)
            segments = self._open_segments(path, manifest)
        types = _inventory(path / TYPES_FILE)
        relations = _inventory(path / RELATIONS_FILE)
        self.path = path
        self.manifest = manifest
        self.segments = segments
        self.type_ids = [t["id"] for t in types]
        self.type_labels = [t["label"] for t in types]
        self.relation_ids = [r["id"] for r in relations]
        self.relation_labels = [r["label"] for r in relations]
        if type_inventory_hash(self.type_ids) != manifest.get("type_hash"):
            raise KBError(f"KB at {path}: {TYPES_FILE} does not match the type hash in {MANIFEST}")
        self._starts = np.array([s.start for s in self.segments], dtype=np.int64)
        self.max_candidates = manifest.get("max_candidates", DEFAULT_MAX_CANDIDATES)
        person = manifest.get("person_type")
        self.person_type_index = self.type_ids.index(person) if person in self.type_ids else -1
        self.entity_vector_length = _embedding_width(path, manifest, segments)

    @staticmethod
    def _open_segments(path: Path, manifest: Dict[str, Any]) -> List[Segment]:
        segments = []
        start = 0
        for info in manifest["segments"]:
            segment = Segment(path / info["name"], start)
            if segment.n_entities != info.get("n_entities"):
                raise KBError(
                    f"KB at {path}: segment {info['name']} has {segment.n_entities} entities, manifest says {info.get('n_entities')}"
                )
            segments.append(segment)
            start = segment.end
        return segments

    @property
    def entity_vector_length(self) -> int:
        """Width of the entities' description embeddings (0 before `kb embed`)."""
        return self._vector_length

    @entity_vector_length.setter
    def entity_vector_length(self, value: int) -> None:
        self._vector_length = value

    # --------------------------------------------------------------- entities

    def __len__(self) -> int:
        return self.segments[-1].end if self.segments else 0

    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def type_hash(self) -> str:
        return self.manifest.get("type_hash", "")

    @property
    def nbytes(self) -> int:
        """Size of the KB's files on disk, in bytes (0 for an empty KB)."""
        return directory_nbytes(self.path) if self.path is not None else 0

    @property
    def has_embeddings(self) -> bool:
        return bool(self.segments) and all(s.embeddings is not None for s in self.segments)

    def _segment_of(self, index: int) -> Segment:
        if not 0 <= index < len(self):
            raise IndexError(f"entity index {index} out of range for a KB of {len(self)} entities")
        return self.segments[int(np.searchsorted(self._starts, index, side="right")) - 1]

    def _local(self, index: int) -> Tuple[Segment, int]:
        segment = self._segment_of(int(index))
        return segment, int(index) - segment.start

    def find(self, entity_ids: Iterable[str]) -> np.ndarray:
        """Global indices of entity IDs, -1 for IDs not in the KB."""
        return self.find_keys(np.array([string_key(e) for e in entity_ids], dtype=np.uint64))

    def find_keys(self, keys: np.ndarray, titles: bool = False) -> np.ndarray:
        """Global indices of entity-ID keys (or, with `titles`, Wikipedia-title keys); -1 where unknown."""
        result = np.full(len(keys), -1, dtype=np.int64)
        for segment in self.segments:
            found = segment.find_titles(keys) if titles else segment.find_entities(keys)
            result = np.where(result < 0, found, result)
        return result

    def index(self, entity_id: str) -> int:
        """Global index of an entity ID.

        entity_id (str): The ID.
        RETURNS (int): Its index.
        RAISES (UnknownEntityError): A `KeyError` naming the ID, if it is not in the KB.
        """
        found = int(self.find([entity_id])[0])
        if found < 0:
            raise UnknownEntityError(f"entity {entity_id!r} is not in the KB at {self.path}")
        return found

    def __contains__(self, entity_id: str) -> bool:
        return int(self.find([entity_id])[0]) >= 0

    def entity_id(self, index: int) -> str:
        segment, local = self._local(index)
        return segment.entity_ids[local]

    def entity_ids(self, indices: Sequence[int]) -> List[str]:
        """IDs of many entities at once."""
        indices = np.asarray(indices, dtype=np.int64)
        ids: List[str] = [""] * len(indices)
        for segment, positions, local in self._by_segment(indices):
            for position, entity_id in zip(positions.tolist(), segment.entity_ids.get_many(local)):
                ids[position] = entity_id
        return ids

    def title(self, index: int) -> str:
        """The entity's Wikipedia title ("" when it has none)."""
        segment, local = self._local(index)
        return segment.entity_titles[local]

    def find_titles(self, titles: Iterable[str]) -> np.ndarray:
        """Global indices of the entities with these Wikipedia titles, -1 for unknown titles."""
        keys = np.array([string_key(normalize_title(t)) if t else 0 for t in titles], dtype=np.uint64)
        return self.find_keys(keys, titles=True)

    def label(self, index: int) -> str:
        segment, local = self._local(index)
        return segment.labels[local]

    def description(self, index: int) -> str:
        segment, local = self._local(index)
        return segment.descriptions[local]

    def aliases(self, index: int) -> List[str]:
        segment, local = self._local(index)
        offsets = segment.entity_alias_offsets
        return segment.entity_aliases.get_many(range(offsets[local], offsets[local + 1]))

    def types(self, index: int) -> List[str]:
        segment, local = self._local(index)
        values = segment.type_values[segment.type_offsets[local] : segment.type_offsets[local + 1]]
        return [self.type_ids[v] for v in values]

    def popularity(self, index: int) -> float:
        segment, local = self._local(index)
        return float(segment.popularity[local])

    def entity(self, index: int) -> Dict[str, Any]:
        """Everything the KB holds about one entity, as a JSON-ready dict."""
        return {
            "id": self.entity_id(index),
            "label": self.label(index),
            "description": self.description(index),
            "title": self.title(index),
            "aliases": self.aliases(index),
            "types": self.types(index),
            "popularity": self.popularity(index),
            "facts": [
                {"relation": self.relation_ids[r], "object": self.entity_id(o)}
                for _, r, o in zip(*self.facts_about(np.array([index])))
            ],
        }

    # ------------------------------------------------------ vectorised access

    def _by_segment(self, indices: np.ndarray) -> Iterator[Tuple[Segment, np.ndarray, np.ndarray]]:
        """Yield (segment, positions in `indices`, local rows) for each segment hit."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"entity indices out of range for a KB of {len(self)} entities")
        owner = np.searchsorted(self._starts, indices, side="right") - 1
        for s, segment in enumerate(self.segments):
            positions = np.flatnonzero(owner == s)
            if len(positions):
                yield segment, positions, indices[positions] - segment.start

    def popularities(self, indices: np.ndarray) -> np.ndarray:
        out = np.zeros(len(indices), dtype=np.float32)
        for segment, positions, local in self._by_segment(indices):
            out[positions] = segment.popularity[local]
        return out

    def type_matrix(self, indices: np.ndarray) -> np.ndarray:
        """Multi-hot (len(indices), n_types) float32 matrix of the entities' types."""
        out = np.zeros((len(indices), len(self.type_ids)), dtype=np.float32)
        for segment, positions, local in self._by_segment(indices):
            lengths, values = csr_gather(segment.type_offsets, segment.type_values, local)
            out[np.repeat(positions, lengths), values] = 1.0
        return out

    def type_lists(self, indices: np.ndarray) -> np.ndarray:
        """The entities' type indices, (len(indices), T) int64 padded with -1."""
        lengths = np.zeros(len(indices), dtype=np.int64)
        parts = []
        for segment, positions, local in self._by_segment(indices):
            part_lengths, values = csr_gather(segment.type_offsets, segment.type_values, local)
            lengths[positions] = part_lengths
            parts.append((positions, part_lengths, values))
        out = np.full((len(indices), max(1, int(lengths.max(initial=0)))), -1, dtype=np.int64)
        for positions, part_lengths, values in parts:
            slot = concatenated_ranges(np.zeros(len(part_lengths)), part_lengths)
            out[np.repeat(positions, part_lengths), slot] = values
        return out

    def embeddings(self, indices: np.ndarray) -> np.ndarray:
        """Description embeddings (float32) of the entities; KBError if not computed."""
        if not self.has_embeddings:
            raise KBError(
                f"KB at {self.path} has no description embeddings: run `python -m spacy_refined kb embed PIPELINE {self.path}`"
            )
        out = np.zeros((len(indices), self.entity_vector_length), dtype=np.float32)
        for segment, positions, local in self._by_segment(indices):
            out[positions] = segment.embeddings[local]
        return out

    def facts_about(self, subjects: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All facts (subject, relation, object) whose subject is one of `subjects`."""
        return self._facts(np.asarray(subjects, dtype=np.int64), by_object=False)

    def facts_pointing_to(self, objects: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All facts (subject, relation, object) whose object is one of `objects`."""
        return self._facts(np.asarray(objects, dtype=np.int64), by_object=True)

    def links_among(self, entities: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Which of `entities` (distinct KB indices) a fact connects, in either
        direction: positions (i, j), i != j, each connected pair given both
        ways, sorted."""
        entities = np.asarray(entities, dtype=np.int64)
        n = len(entities)
        if n < 2:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        order = np.argsort(entities, kind="stable")
        ordered = entities[order]
        subjects, _, objects = self.facts_about(entities)
        at = sorted_positions(ordered, objects)
        inside = at >= 0
        a = order[sorted_positions(ordered, subjects[inside])]
        b = order[at[inside]]
        distinct = a != b
        a, b = a[distinct], b[distinct]
        pairs = np.unique(np.concatenate([a * n + b, b * n + a]))
        return pairs // n, pairs % n

    def _facts(self, wanted: np.ndarray, by_object: bool):
        parts = []
        for segment in self.segments:
            keys = segment.fact_objects_sorted if by_object else segment.fact_subjects
            left = np.searchsorted(keys, wanted, side="left")
            right = np.searchsorted(keys, wanted, side="right")
            lengths = right - left
            if not lengths.any():
                continue
            rows = concatenated_ranges(left, lengths)
            if by_object:
                rows = segment.fact_object_order[rows]
            parts.append((segment.fact_subjects[rows], segment.fact_relations[rows], segment.fact_objects[rows]))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))

    # ------------------------------------------------------------- candidates

    def candidates(self, mentions: Sequence[str], k: Optional[int] = None) -> CandidateCSR:
        """Top-k entities by prior P(e|m) for each mention text, vectorised
        (k None or 0: `max_candidates`). The generators of the module
        `spacy_refined.kb.candidates` also use the mentions' document."""
        return self.candidates_of_keys(np.array(alias_keys(mentions), dtype=np.uint64), k)

    def candidates_of_keys(self, keys: np.ndarray, k: Optional[int] = None) -> CandidateCSR:
        """Top-k entities by prior for each alias key (see `candidates`)."""
        k = k or self.max_candidates
        per_segment = [segment.find_aliases(keys) for segment in self.segments]
        if not self.segments:
            return CandidateCSR(np.zeros(len(keys) + 1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        base, base_rows = self.segments[0], per_segment[0]
        hit = base_rows >= 0
        lengths = np.zeros(len(keys), dtype=np.int64)
        hit_lengths, entities = csr_gather(base.candidate_offsets, base.candidate_entities, base_rows[hit], k)
        _, counts = csr_gather(base.candidate_offsets, base.candidate_counts, base_rows[hit], k)
        lengths[hit] = hit_lengths
        priors = counts / np.repeat(base.alias_totals[base_rows[hit]], hit_lengths)
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        batch = CandidateCSR(offsets, entities.astype(np.int64), priors.astype(np.float32))
        extra_hits = (
            np.flatnonzero(np.any([rows >= 0 for rows in per_segment[1:]], axis=0)) if len(per_segment) > 1 else []
        )
        if len(extra_hits):
            batch = self._merge_segments(batch, per_segment, extra_hits, k)
        return batch

    def _merge_segments(
        self, batch: CandidateCSR, per_segment: List[np.ndarray], mentions: Sequence[int], k: int
    ) -> CandidateCSR:
        """Combine evidence from all segments for the (few) mentions that added segments know."""
        rows_of: List[Tuple[np.ndarray, np.ndarray]] = [batch[m] for m in range(len(batch))]
        for m in mentions:
            evidence: Dict[int, float] = {}
            total = 0.0
            for segment, rows in zip(self.segments, per_segment):
                row = rows[m]
                if row < 0:
                    continue
                start, end = segment.candidate_offsets[row], segment.candidate_offsets[row + 1]
                for entity, count in zip(segment.candidate_entities[start:end], segment.candidate_counts[start:end]):
                    evidence[int(entity)] = evidence.get(int(entity), 0.0) + float(count)
                total += float(segment.alias_totals[row])
            ranked = sorted(evidence.items(), key=lambda item: (-item[1], item[0]))[:k]
            rows_of[m] = (
                np.array([e for e, _ in ranked], dtype=np.int64),
                np.array([c / total for _, c in ranked], dtype=np.float32),
            )
        return CandidateCSR.from_rows(rows_of)

    def _own_files(self) -> List[str]:
        """The KB's files as its manifest lists them (the manifest last), relative to its directory."""
        if self.path is None:
            raise KBError("cannot save an empty KB: build one with `python -m spacy_refined kb build`")
        return kb_files(self.path, self.manifest) + [MANIFEST]

    def verify(self) -> List[str]:
        """Check the whole KB: each file against the sha256 its manifest
        recorded when it was written, and every value of every array (see
        `Segment.check`). Slow on a large KB: it reads every file.

        RETURNS (List[str]): One line per problem, naming the file (empty: none).
        """
        if self.path is None:
            raise KBError("cannot verify an empty KB")
        problems = []
        recorded = self.manifest.get("checksums") or {}
        for name in kb_files(self.path, self.manifest):
            if name in recorded and file_sha256(self.path / name) != recorded[name]:
                problems.append(f"{self.path / name}: changed since it was written (sha256 differs from {MANIFEST})")
        for segment in self.segments:
            problems += segment.check(len(self), len(self.type_ids), len(self.relation_ids))
        return problems


def _inventory(path: Path) -> List[Dict[str, Any]]:
    """The types or relations of a KB: a JSON list of objects with "id" and "label"."""
    items = read_json_file(path)
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i and "label" in i for i in items):
        raise KBError(f"{path}: expected a list of objects with 'id' and 'label'; the file is damaged")
    return items


def _embedding_width(path: Path, manifest: Dict[str, Any], segments: List[Segment]) -> int:
    """The width of the KB's embeddings (0 without); KBError naming a segment whose width is not the manifest's
    (or, without one recorded, the first segment's)."""
    embedded = [s for s in segments if s.embeddings is not None]
    if not embedded:
        return 0
    width = (manifest.get("embeddings") or {}).get("width") or embedded[0].embeddings.shape[1]
    for segment in embedded:
        if segment.embeddings.shape[1] != width:
            raise KBError(
                f"{segment.path / EMBEDDINGS_FILE}: embeddings of width {segment.embeddings.shape[1]}, "
                f"the KB's are {width} wide (run `kb embed --force`)"
            )
    return width
