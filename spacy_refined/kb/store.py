"""The KB store: a spaCy `KnowledgeBase` over memory-mapped segments.

The store reads a KB; `kb.builder` writes one (`KBBuilder`) and appends
segments to it (`append_segment`). The one thing the store writes is the
description embeddings that `kb embed` computes (`set_embeddings`).
`RefinedKB.reload` shows a KB object what was written to its directory since
it was opened.
"""

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import srsly
from spacy.kb import Candidate, KnowledgeBase
from spacy.strings import get_string_id
from spacy.tokens import Span
from spacy.util import SimpleFrozenList
from spacy.vocab import Vocab

from ..util import PathLike, concatenated_ranges, csr_gather, sorted_positions
from .arrays import save_array
from .candidates import CandidateCSR, person_name_candidates
from .errors import KBError, UnknownEntityError
from .format import (
    DEFAULT_MAX_CANDIDATES,
    EMBEDDINGS_FILE,
    MANIFEST,
    RELATIONS_FILE,
    TYPES_FILE,
    directory_nbytes,
    read_manifest,
    staging_directory,
    type_inventory_hash,
    write_manifest,
)
from .normalize import alias_keys, normalize_alias, normalize_title
from .segment import Segment


class RefinedKB(KnowledgeBase):
    """A knowledge base of entities, aliases, types and facts, opened by mmap.

    Subclasses spaCy's `KnowledgeBase`, so spaCy's own `entity_linker` can
    use it; the ReFinED linker uses the vectorised `candidates` API.
    """

    def __init__(self, vocab: Vocab, entity_vector_length: int = 0, path: Optional[PathLike] = None) -> None:
        self._vector_length = entity_vector_length
        super().__init__(vocab, entity_vector_length)
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
    def load(cls, path: PathLike, vocab: Optional[Vocab] = None) -> "RefinedKB":
        """Open the KB at `path` (instantly: arrays are memory-mapped)."""
        return cls(vocab if vocab is not None else Vocab(), path=path)

    def reload(self) -> None:
        """Re-open the KB's directory, to see what was written to it since it
        was opened (segments appended by `kb.builder.append_segment`)."""
        if self.path is None:
            raise KBError("cannot reload an empty KB: it has no directory")
        self._open(self.path)

    def _open(self, path: Path) -> None:
        manifest = read_manifest(path)
        self.path = path
        self.manifest = manifest
        types = srsly.read_json(path / TYPES_FILE)
        relations = srsly.read_json(path / RELATIONS_FILE)
        self.type_ids = [t["id"] for t in types]
        self.type_labels = [t["label"] for t in types]
        self.relation_ids = [r["id"] for r in relations]
        self.relation_labels = [r["label"] for r in relations]
        if type_inventory_hash(self.type_ids) != manifest["type_hash"]:
            raise KBError(f"KB at {path}: {TYPES_FILE} does not match the type hash in {MANIFEST}")
        self.segments = []
        start = 0
        for info in manifest["segments"]:
            segment = Segment(path / info["name"], start)
            if segment.n_entities != info["n_entities"]:
                raise KBError(
                    f"KB at {path}: segment {info['name']} has {segment.n_entities} entities, manifest says {info['n_entities']}"
                )
            self.segments.append(segment)
            start = segment.end
        self._starts = np.array([s.start for s in self.segments], dtype=np.int64)
        self.max_candidates = manifest.get("max_candidates", DEFAULT_MAX_CANDIDATES)
        person = manifest.get("person_type")
        self.person_type_index = self.type_ids.index(person) if person in self.type_ids else -1
        dims = {s.embeddings.shape[1] for s in self.segments if s.embeddings is not None}
        self.entity_vector_length = dims.pop() if len(dims) == 1 else 0

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
        return self.find_keys(np.array([get_string_id(e) for e in entity_ids], dtype=np.uint64))

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
        keys = np.array([get_string_id(normalize_title(t)) if t else 0 for t in titles], dtype=np.uint64)
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
        k = k or self.max_candidates
        keys = np.array(alias_keys(mentions), dtype=np.uint64)
        per_segment = []
        for segment in self.segments:
            rows = segment.find_aliases(keys)
            per_segment.append(rows)
        if not self.segments:
            return CandidateCSR(
                np.zeros(len(mentions) + 1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
            )
        base, base_rows = self.segments[0], per_segment[0]
        hit = base_rows >= 0
        lengths = np.zeros(len(mentions), dtype=np.int64)
        hit_lengths, entities = csr_gather(base.candidate_offsets, base.candidate_entities, base_rows[hit], k)
        _, counts = csr_gather(base.candidate_offsets, base.candidate_counts, base_rows[hit], k)
        lengths[hit] = hit_lengths
        priors = counts / np.repeat(base.alias_totals[base_rows[hit]], hit_lengths)
        offsets = np.zeros(len(mentions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        batch = CandidateCSR(offsets, entities.astype(np.int64), priors.astype(np.float32))
        extra_hits = [m for m in range(len(mentions)) if any(rows[m] >= 0 for rows in per_segment[1:])]
        if extra_hits:
            batch = self._merge_segments(batch, per_segment, extra_hits, k)
        return batch

    def _merge_segments(
        self, batch: CandidateCSR, per_segment: List[np.ndarray], mentions: List[int], k: int
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

    # ---------------------------------------------------- spaCy KnowledgeBase

    def get_candidates(self, mention: Span) -> List[Candidate]:
        return self.get_candidates_batch([mention])[0]

    def get_candidates_batch(self, mentions: Iterable[Span]) -> List[List[Candidate]]:
        mentions = list(mentions)
        result: List[List[Candidate]] = [[] for _ in mentions]
        by_doc: Dict[int, List[int]] = {}
        for i, span in enumerate(mentions):
            by_doc.setdefault(id(span.doc), []).append(i)
        for positions in by_doc.values():
            positions.sort(key=lambda i: mentions[i].start_char)
            texts = [mentions[i].text for i in positions]
            batch = person_name_candidates(self, texts)
            vectors = self.embeddings(batch.entities) if self.has_embeddings else None
            entity_hashes = [self.vocab.strings.add(entity_id) for entity_id in self.entity_ids(batch.entities)]
            popularity = self.popularities(batch.entities).tolist()
            priors = batch.priors.tolist()
            for j, i in enumerate(positions):
                alias_hash = self.vocab.strings.add(normalize_alias(texts[j]))
                result[i] = [
                    Candidate(
                        self,
                        entity_hash=entity_hashes[c],
                        entity_freq=popularity[c],
                        entity_vector=vectors[c] if vectors is not None else [],
                        alias_hash=alias_hash,
                        prior_prob=priors[c],
                    )
                    for c in range(batch.offsets[j], batch.offsets[j + 1])
                ]
        return result

    def get_vector(self, entity: str) -> List[float]:
        return self.get_vectors([entity])[0]

    def get_vectors(self, entities: Iterable[str]) -> List[List[float]]:
        """Description embeddings; zeros for IDs not in the KB (e.g. "NIL"), as spaCy's own KB does."""
        indices = self.find(list(entities))
        vectors = np.zeros((len(indices), self.entity_vector_length), dtype=np.float32)
        known = indices >= 0
        if known.any():
            vectors[known] = self.embeddings(indices[known])
        return vectors.tolist()

    def to_disk(self, path: PathLike, exclude: Iterable[str] = SimpleFrozenList()) -> None:
        """Copy the KB directory to `path` (written aside, then renamed into place)."""
        path = Path(path)
        if self.path is None:
            raise KBError("cannot save an empty KB: build one with `python -m spacy_refined kb build`")
        if path.resolve() == self.path.resolve():
            return
        with staging_directory(path) as staging:
            shutil.copytree(self.path, staging, dirs_exist_ok=True)

    def from_disk(self, path: PathLike, exclude: Iterable[str] = SimpleFrozenList()) -> "RefinedKB":
        self._open(Path(path))
        return self

    def to_bytes(self, **kwargs) -> bytes:
        if self.path is None:
            raise KBError("cannot serialize an empty KB")
        files = {str(p.relative_to(self.path)): p.read_bytes() for p in sorted(self.path.rglob("*")) if p.is_file()}
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Tuple[str] = tuple()) -> "RefinedKB":
        files = srsly.msgpack_loads(bytes_data)
        directory = Path(tempfile.mkdtemp(prefix="spacy-refined-kb-"))
        weakref.finalize(self, shutil.rmtree, directory, True)
        for name, data in files.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._open(directory)
        return self

    # ------------------------------------------------------------- embeddings

    def set_embeddings(self, segment_index: int, vectors: np.ndarray, model_info: Dict[str, Any]) -> None:
        """Store float16 description embeddings for one segment (used by `kb embed`)."""
        segment = self.segments[segment_index]
        if vectors.shape[0] != segment.n_entities:
            raise KBError(f"got {vectors.shape[0]} embeddings for a segment of {segment.n_entities} entities")
        tmp = segment.path / (EMBEDDINGS_FILE + ".tmp.npy")
        save_array(tmp, vectors.astype(np.float16))
        os.replace(tmp, segment.path / EMBEDDINGS_FILE)
        manifest = dict(self.manifest)
        manifest["embeddings"] = model_info
        write_manifest(self.path, manifest)
        self._open(self.path)
