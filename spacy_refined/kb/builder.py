"""Build a KB from Wikidata/Wikipedia dumps and users' own entities.

Memory stays bounded whatever the input size: entity columns stream to disk
in input order and are read back in chunks (`CHUNK`), the indexes by key and
the popularity ranks are sorted out of memory (`arrays.sorted_blocks`),
alias evidence is hash-partitioned into bucket files that are aggregated one
at a time (each bucket covers a contiguous range of alias keys, so the
output comes out sorted), and the KB is written to a staging directory that
replaces the output only once complete.

Priors. Every (alias, entity) pair gathers evidence: Wikipedia anchor
links (1 per link, through redirects), mention counts given by the user
(their count), redirect titles (1), and the entity's label and aliases
(`label_weight` / `alias_weight`, times 1 + popularity, so that among
entities that only share a name the popular one comes first). P(e|m) is an
entity's evidence over the alias's total evidence.

Popularity is the mean percentile rank of the signals the inputs provide:
explicit scores (a `--popularity` TSV such as PageRank, or a JSONL
`popularity` field) and the number of sitelinks.

Types. An entity's types are its `instance of` (P31) classes and, for
classes, their `subclass of` (P279) parents, closed over subclass-of. The
type inventory keeps the `n_types` types held by most entities, skipping
types held by more than `max_type_share` of the typed entities (too general
to tell candidates apart, e.g. "entity") or by fewer than `min_type_count`.
"""

import math
import shutil
import time
from array import array
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
from spacy.strings import get_string_id
from tqdm import tqdm

from ..ids import NIL, UNKNOWN, entity_status
from ..util import DumpError, PathLike, read_jsonl, read_lines
from .arrays import NpyAppender, StringTable, StringTableWriter, load_array, release, save_array, sorted_blocks
from .errors import KBError
from .format import (
    BASE_SEGMENT,
    DEFAULT_MAX_CANDIDATES,
    EMBEDDINGS_FILE,
    FORMAT,
    FORMAT_VERSION,
    RELATIONS_FILE,
    SEGMENT_ARRAYS,
    SEGMENT_NAME,
    TYPES_FILE,
    ArraySpec,
    atomic_file,
    checksums,
    kb_files,
    missing_segment_files,
    new_segment_name,
    remove_litter,
    segment_files,
    staging_directory,
    type_inventory_hash,
    write_json,
    write_manifest,
)
from .lock import write_lock
from .normalize import alias_key, normalize_title
from .segment import find_sorted
from .store import RefinedKB
from .wikidata import WikidataRecord, read_wikidata
from .wikipedia import read_wikipedia


class Evidence(IntEnum):
    """The kinds of evidence that an alias names an entity; the manifest
    records the weight of each under its lower-case name."""

    LABEL = 0
    ALIAS = 1
    ANCHOR = 2
    REDIRECT = 3
    COUNT = 4


EVIDENCE_DTYPE = np.dtype([("alias", "<u8"), ("target", "<u8"), ("kind", "u1"), ("weight", "<f4")])
_BUCKET_FLUSH = 1 << 18
# Entities (or facts) read from the work files at once.
CHUNK = 1 << 16
# Type closures (of a class, of a combination of types) kept for reuse while
# the type inventory is chosen and written: a bound on memory, not on results.
TYPE_CACHE_SIZE = 1 << 14
# The writer's own columns, in its work directory (removed once the segment is written).
WORK_ARRAYS: Dict[str, ArraySpec] = {
    array.name: array
    for array in (
        ArraySpec("entity_keys", "uint64", "spaCy string hash of each entity ID, in entity order"),
        ArraySpec("title_keys", "uint64", "spaCy string hash of each Wikipedia title (0: none), in entity order"),
        ArraySpec("raw_popularity", "float32", "popularity given in the input (NaN: none)"),
        ArraySpec("sitelinks", "int32", "number of sitelinks"),
        ArraySpec("type_keys", "uint64", "spaCy string hashes of the types and superclasses of each entity"),
        ArraySpec("type_offsets", "int64", "CSR per entity into `type_keys`"),
        ArraySpec("fact_subjects", "int32", "global entity indices"),
        ArraySpec("fact_relations", "int32", "the segment's own relation numbers"),
        ArraySpec("fact_object_keys", "uint64", "spaCy string hash of each object ID"),
    )
}

TypeMapper = Callable[[Tuple[int, ...]], List[int]]
# A popularity rule: each entity's popularity in [0, 1], in chunks, in entity order.
PopularityRule = Callable[["SegmentWriter"], Iterator[np.ndarray]]


@dataclass
class EntityRecord:
    """One entity as the builder takes it, whatever its source."""

    id: str
    label: str = ""
    description: str = ""
    aliases: List[str] = field(default_factory=list)
    types: List[str] = field(default_factory=list)
    subclass_of: List[str] = field(default_factory=list)
    facts: List[Tuple[str, str]] = field(default_factory=list)
    popularity: Optional[float] = None
    sitelinks: int = 0
    title: Optional[str] = None

    @classmethod
    def from_wikidata(cls, record: WikidataRecord) -> "EntityRecord":
        """The entity of an item of a Wikidata dump (its P31 classes as types)."""
        return cls(
            id=record.id,
            label=record.label or "",
            description=record.description or "",
            aliases=record.aliases,
            types=record.instance_of,
            subclass_of=record.subclass_of,
            facts=record.facts,
            sitelinks=record.sitelink_count,
            title=record.sitelink_title,
        )

    @classmethod
    def from_dict(cls, data: Any, popularity_range: Optional[Tuple[float, float]] = None) -> "EntityRecord":
        """Validate a user's entity.

        data (Any): The entity, as read from JSON.
        popularity_range (Optional[Tuple[float, float]]): The range that a
            given popularity must lie in, e.g. (0, 1) for the percentile scale
            of entities added to a KB; None: any number (a build ranks them).
        RETURNS (EntityRecord): The record.
        RAISES (ValueError): Saying what is wrong.
        """
        if not isinstance(data, dict):
            raise ValueError(f"an entity must be a JSON object, got {type(data).__name__}")
        if not isinstance(data.get("id"), str) or not data["id"].strip():
            raise ValueError(f"an entity needs a non-empty string 'id', got {data.get('id')!r}")
        for name in ("label", "description", "title"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ValueError(f"'{name}' must be a string, got {data[name]!r}")
        facts = []
        for fact in data.get("facts") or []:
            if isinstance(fact, dict) and "relation" in fact and "object" in fact:
                facts.append((str(fact["relation"]), str(fact["object"])))
            elif isinstance(fact, (list, tuple)) and len(fact) == 2:
                facts.append((str(fact[0]), str(fact[1])))
            else:
                raise ValueError(
                    f"facts must be {{'relation', 'object'}} objects or [relation, object] pairs, got {fact!r}"
                )
        for name in ("aliases", "types", "subclass_of"):
            value = data.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"'{name}' must be a list of strings")
        popularity = data.get("popularity")
        if popularity is not None:
            if isinstance(popularity, bool) or not isinstance(popularity, (int, float)) or math.isnan(popularity):
                raise ValueError(f"'popularity' must be a number, got {popularity!r}")
            low, high = popularity_range or (-math.inf, math.inf)
            if not low <= popularity <= high:
                raise ValueError(f"'popularity' must lie in [{low:g}, {high:g}], got {popularity!r}")
        return cls(
            id=data["id"].strip(),
            label=data.get("label") or "",
            description=data.get("description") or "",
            aliases=list(data.get("aliases") or []),
            types=list(data.get("types") or []),
            subclass_of=list(data.get("subclass_of") or []),
            facts=facts,
            popularity=None if popularity is None else float(popularity),
            title=data.get("title"),
        )


class _EvidenceBuckets:
    """Alias evidence rows, partitioned by the top bits of the alias key."""

    def __init__(self, directory: Path, n_buckets: int) -> None:
        if n_buckets & (n_buckets - 1) or not 1 <= n_buckets <= 4096:
            raise ValueError("n_buckets must be a power of two between 1 and 4096")
        self.directory = directory
        self.shift = np.uint64(64 - n_buckets.bit_length() + 1) if n_buckets > 1 else np.uint64(64)
        self.n_buckets = n_buckets
        self.paths = [directory / f"evidence-{b:04d}.bin" for b in range(n_buckets)]
        for path in self.paths:
            path.write_bytes(b"")
        self._rows: List[Tuple[int, int, int, float]] = []

    def add(self, alias: str, target: int, kind: Evidence, weight: float) -> None:
        key = alias_key(alias)
        if key and target and weight > 0:
            self._rows.append((key, target, kind, weight))
            if len(self._rows) >= _BUCKET_FLUSH:
                self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows = np.array(self._rows, dtype=EVIDENCE_DTYPE)
        self._rows = []
        bucket = (rows["alias"] >> self.shift).astype(np.int64) if self.n_buckets > 1 else np.zeros(len(rows), np.int64)
        order = np.argsort(bucket, kind="stable")
        rows, bucket = rows[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(self.n_buckets + 1))
        for b in range(self.n_buckets):
            if bounds[b] < bounds[b + 1]:
                with open(self.paths[b], "ab") as f:
                    f.write(rows[bounds[b] : bounds[b + 1]].tobytes())

    def read(self, b: int) -> np.ndarray:
        return np.fromfile(self.paths[b], dtype=EVIDENCE_DTYPE)


class SegmentWriter:
    """Streams entities and alias evidence of one segment into `directory`.

    Entities are added one by one (`add_entity`) with the evidence of their
    names; other evidence goes to `evidence`. `close` ends the stream and
    indexes the entities, `finish` writes the rest of the segment.
    """

    def __init__(self, directory: Path, work: Path, start: int, n_buckets: int) -> None:
        self.directory = directory
        self.work = work
        self.start = start
        directory.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self.n_entities = 0
        self._ids = StringTableWriter(directory, "entity_ids")
        self._labels = StringTableWriter(directory, "labels")
        self._descriptions = StringTableWriter(directory, "descriptions")
        self._aliases = StringTableWriter(directory, "entity_aliases")
        self._alias_offsets = self._appender("entity_alias_offsets")
        self._alias_offsets.append(0)
        self._n_aliases = 0
        self._titles = StringTableWriter(directory, "entity_titles")
        self._keys = self._work_appender("entity_keys")
        self._title_keys = self._work_appender("title_keys")
        self._raw_popularity = self._work_appender("raw_popularity")
        self._sitelinks = self._work_appender("sitelinks")
        self._type_keys = self._work_appender("type_keys")
        self._type_offsets = self._work_appender("type_offsets")
        self._type_offsets.append(0)
        self._n_type_keys = 0
        self._fact_subjects = self._work_appender("fact_subjects")
        self._fact_relations = self._work_appender("fact_relations")
        self._fact_objects = self._work_appender("fact_object_keys")
        self.evidence = _EvidenceBuckets(work, n_buckets)
        self.redirects = (array("Q"), array("Q"))  # title key -> target title key
        self.class_names: Dict[int, str] = {}
        self.superclasses: Dict[int, List[int]] = defaultdict(list)
        self.relations: Dict[str, int] = {}
        self._closed = False

    # ------------------------------------------------------------ array files

    def _path(self, name: str) -> Path:
        return self.directory / SEGMENT_ARRAYS[name].file

    def _appender(self, name: str) -> NpyAppender:
        return NpyAppender(self._path(name), SEGMENT_ARRAYS[name].dtype)

    def _work_path(self, name: str) -> Path:
        return self.work / WORK_ARRAYS[name].file

    def _work_appender(self, name: str) -> NpyAppender:
        return NpyAppender(self._work_path(name), WORK_ARRAYS[name].dtype)

    def _load_work(self, name: str) -> np.ndarray:
        return load_array(self._work_path(name))

    # -------------------------------------------------------------- streaming

    def add_entity(self, record: EntityRecord) -> None:
        key = get_string_id(record.id)
        index = self.start + self.n_entities
        self.n_entities += 1
        self._ids.append(record.id)
        self._labels.append(record.label)
        self._descriptions.append(record.description)
        aliases = [a for a in dict.fromkeys(record.aliases) if a and a != record.label]
        self._aliases.extend(aliases)
        self._n_aliases += len(aliases)
        self._alias_offsets.append(self._n_aliases)
        self._keys.append(key)
        self._raw_popularity.append(np.nan if record.popularity is None else record.popularity)
        self._sitelinks.append(record.sitelinks)
        type_keys = []
        for name in dict.fromkeys(record.types + record.subclass_of):
            type_key = get_string_id(name)
            self.class_names.setdefault(type_key, name)
            type_keys.append(type_key)
        for parent in record.subclass_of:
            self.superclasses[key].append(get_string_id(parent))
            self.class_names.setdefault(key, record.id)
        self._type_keys.extend(type_keys)
        self._n_type_keys += len(type_keys)
        self._type_offsets.append(self._n_type_keys)
        for relation, obj in record.facts:
            self._fact_subjects.append(index)
            self._fact_relations.append(self.relations.setdefault(relation, len(self.relations)))
            self._fact_objects.append(get_string_id(obj))
        if record.label:
            self.evidence.add(record.label, key, Evidence.LABEL, 1.0)
        for alias in aliases:
            self.evidence.add(alias, key, Evidence.ALIAS, 1.0)
        title = normalize_title(record.title) if record.title else ""
        self._titles.append(title)
        self._title_keys.append(get_string_id(title) if title else 0)

    def close(self) -> None:
        """End the stream of entities and index them by ID and by Wikipedia
        title (a title claimed twice goes to its first entity); `resolve`
        works from then on. KBError on a duplicate ID."""
        for writer in (
            self._ids,
            self._labels,
            self._descriptions,
            self._aliases,
            self._alias_offsets,
            self._keys,
            self._titles,
            self._title_keys,
            self._raw_popularity,
            self._sitelinks,
            self._type_keys,
            self._type_offsets,
            self._fact_subjects,
            self._fact_relations,
            self._fact_objects,
        ):
            writer.close()
        self.evidence.flush()
        keys_out, rows_out = self._appender("entity_keys"), self._appender("entity_key_rows")
        last = None
        for keys, rows in sorted_blocks(self._load_work("entity_keys"), self.work / "sort"):
            keys_out.extend(keys)
            rows_out.extend(rows)
            repeated = np.flatnonzero(keys[1:] == keys[:-1])
            if last is not None and keys[0] == last[0]:
                repeated, rows = np.zeros(1, np.int64), np.r_[last[1], rows]
            if len(repeated):
                duplicated = StringTable.load(self.directory, "entity_ids")[int(rows[repeated[0]])]
                raise KBError(f"entity ID {duplicated!r} occurs more than once in the input")
            last = keys[-1], rows[-1]
        keys_out.close()
        rows_out.close()
        # The title index: the rows with a title, by title; a title claimed twice goes to its first entity.
        keys_out, rows_out = self._appender("title_keys"), self._appender("title_key_rows")
        last_key = None
        for keys, rows in sorted_blocks(self._load_work("title_keys"), self.work / "sort", skip_zero=True):
            first = np.r_[keys[0] != last_key, keys[1:] != keys[:-1]]
            keys_out.extend(keys[first])
            rows_out.extend(rows[first])
            last_key = keys[-1]
        keys_out.close()
        rows_out.close()
        self._closed = True

    def resolve(self, keys: np.ndarray) -> np.ndarray:
        """Global indices of this segment's entities with these ID keys (-1 where absent)."""
        assert self._closed, "resolve() needs close() first"
        # Mapped for each call, so that the pages read do not stay resident.
        sorted_keys, rows = load_array(self._path("entity_keys")), load_array(self._path("entity_key_rows"))
        return find_sorted(sorted_keys, keys, rows, self.start)

    def raw_popularity(self) -> np.ndarray:
        """Each entity's popularity as given in the input (NaN where none), float32, memory-mapped."""
        return self._load_work("raw_popularity")

    def sitelinks(self) -> np.ndarray:
        """Each entity's number of sitelinks, int32, memory-mapped."""
        return self._load_work("sitelinks")

    def iter_raw_types(self) -> Iterator[Tuple[int, ...]]:
        """The raw type keys of each entity, in entity order (read in chunks)."""
        offsets = self._load_work("type_offsets")
        keys = self._load_work("type_keys")
        for first in range(0, len(offsets) - 1, CHUNK):
            bounds = np.asarray(offsets[first : first + CHUNK + 1])
            values = np.asarray(keys[bounds[0] : bounds[-1]]).tolist()
            starts = (bounds - bounds[0]).tolist()
            for start, end in zip(starts[:-1], starts[1:]):
                yield tuple(values[start:end])
            release(offsets)
            release(keys)

    # -------------------------------------------------------------- finishing

    def finish(
        self,
        popularity: PopularityRule,
        map_types: TypeMapper,
        relation_map: np.ndarray,
        weights: Dict[Evidence, float],
        max_candidates: int,
        kb: Optional[RefinedKB] = None,
    ) -> Dict[str, int]:
        """Write the rest of the closed segment: popularity, types, facts and
        the alias -> candidates table; then remove the work directory.

        popularity (PopularityRule): The popularity rule, giving each
            entity's popularity in [0, 1], chunk by chunk:
            `percentile_popularity` for a build, `own_popularity` for
            entities added to a KB.
        map_types (TypeMapper): An entity's raw type keys -> its type indices.
        relation_map (np.ndarray): The segment's relation numbers -> the KB's
            relation indices.
        weights (Dict[Evidence, float]): The weight of each kind of evidence.
        max_candidates (int): Candidates kept per alias.
        kb (Optional[RefinedKB]): The KB the segment is appended to, whose
            entities facts and evidence may name; None for a base segment.
        RETURNS (Dict[str, int]): The segment's n_entities, n_aliases and
            n_facts, as the manifest lists them.
        """
        values = self._appender("popularity")
        for chunk in popularity(self):
            values.extend(np.asarray(chunk, dtype=np.float32))
        values.close()

        def resolve(keys: np.ndarray) -> np.ndarray:
            found = self.resolve(keys)
            if kb is None:
                return found
            return np.where(found >= 0, found, kb.find_keys(np.asarray(keys, dtype=np.uint64)))

        def popularity_of(indices: np.ndarray) -> np.ndarray:
            own = indices >= self.start
            out = np.zeros(len(indices), dtype=np.float32)
            out[own] = load_array(self._path("popularity"))[indices[own] - self.start]
            if kb is not None and (~own).any():
                out[~own] = kb.popularities(indices[~own])
            return out

        self._write_types(map_types)
        n_facts = self._write_facts(resolve, relation_map)
        n_aliases = self._write_candidates(resolve, popularity_of, weights, max_candidates)
        missing = missing_segment_files(self.directory)
        if missing:
            raise RuntimeError(f"segment {self.directory} was written without {', '.join(missing)}")
        shutil.rmtree(self.work, ignore_errors=True)
        return {"n_entities": self.n_entities, "n_aliases": n_aliases, "n_facts": n_facts}

    def _write_types(self, map_types: TypeMapper) -> None:
        """Write each entity's type indices."""
        out_offsets = self._appender("type_offsets")
        out_values = self._appender("type_values")
        out_offsets.append(0)
        total = 0
        for raw in self.iter_raw_types():
            values = map_types(raw)
            out_values.extend(values)
            total += len(values)
            out_offsets.append(total)
        out_offsets.close()
        out_values.close()

    def _write_facts(self, resolve: Callable[[np.ndarray], np.ndarray], relation_map: np.ndarray) -> int:
        """Keep the facts whose object is a known entity; index them by subject and by object.

        Objects are resolved in chunks; the subjects arrive sorted (entities are
        written in order), so only the by-object order needs a sort (out of memory).
        """
        keys = self._load_work("fact_object_keys")
        subjects_in = self._load_work("fact_subjects")
        relations_in = self._load_work("fact_relations")
        subjects = self._appender("fact_subjects")
        relations = self._appender("fact_relations")
        objects = self._appender("fact_objects")
        last_subject = -1
        for start in range(0, len(keys), CHUNK):
            resolved = resolve(keys[start : start + CHUNK])
            keep = resolved >= 0
            kept = np.asarray(subjects_in[start : start + CHUNK])[keep]
            if len(kept) and (kept[0] < last_subject or np.any(kept[1:] < kept[:-1])):
                raise RuntimeError(f"segment {self.directory}: the facts are not in subject order")
            last_subject = kept[-1] if len(kept) else last_subject
            subjects.extend(kept)
            relations.extend(relation_map[np.asarray(relations_in[start : start + CHUNK])[keep]])
            objects.extend(resolved[keep])
            for values in (keys, subjects_in, relations_in):
                release(values)
        for writer in (subjects, relations, objects):
            writer.close()
        order, objects_sorted = self._appender("fact_object_order"), self._appender("fact_objects_sorted")
        for sorted_objects, rows in sorted_blocks(load_array(self._path("fact_objects")), self.work / "sort"):
            order.extend(rows)
            objects_sorted.extend(sorted_objects)
        order.close()
        objects_sorted.close()
        return order.length

    def _write_candidates(
        self,
        resolve: Callable[[np.ndarray], np.ndarray],
        popularity: Callable[[np.ndarray], np.ndarray],
        weights: Dict[Evidence, float],
        max_candidates: int,
    ) -> int:
        """Aggregate the evidence buckets into the alias -> candidates CSR."""
        title_keys, title_rows = load_array(self._path("title_keys")), load_array(self._path("title_key_rows"))
        entity_keys = self._load_work("entity_keys")  # in entity order
        redirect_keys, redirect_targets = _sorted_pairs(self.redirects)
        alias_keys = self._appender("alias_keys")
        alias_totals = self._appender("alias_totals")
        offsets = self._appender("candidate_offsets")
        entities = self._appender("candidate_entities")
        counts = self._appender("candidate_counts")
        offsets.append(0)
        n_candidates = 0
        n_aliases = 0
        kind_weight = np.zeros(len(Evidence), dtype=np.float32)
        for kind, weight in weights.items():
            kind_weight[kind] = weight
        for b in range(self.evidence.n_buckets):
            rows = self.evidence.read(b)
            if not len(rows):
                continue
            target = rows["target"].copy()
            via_title = (rows["kind"] == Evidence.ANCHOR) | (rows["kind"] == Evidence.REDIRECT)
            if via_title.any():
                titles = target[via_title]
                for _ in range(3):  # follow redirect chains (double redirects exist)
                    titles = _map_keys(redirect_keys, redirect_targets, titles, default=titles)
                position = find_sorted(title_keys, titles, title_rows)
                target[via_title] = np.where(position >= 0, entity_keys[np.maximum(position, 0)], 0)
                for values in (title_keys, title_rows, entity_keys):
                    release(values)
            entity = resolve(target)
            keep = entity >= 0
            alias, entity, kind = rows["alias"][keep], entity[keep], rows["kind"][keep]
            weight = rows["weight"][keep] * kind_weight[kind]
            by_name = (kind == Evidence.LABEL) | (kind == Evidence.ALIAS)
            weight[by_name] *= 1.0 + popularity(entity[by_name])
            if not len(alias):
                continue
            # Sum the evidence per (alias, entity) pair.
            order = np.lexsort((entity, alias))
            alias, entity, weight = alias[order], entity[order], weight[order]
            first = np.ones(len(alias), dtype=bool)
            first[1:] = (alias[1:] != alias[:-1]) | (entity[1:] != entity[:-1])
            starts = np.flatnonzero(first)
            alias, entity, weight = alias[starts], entity[starts], np.add.reduceat(weight, starts)
            # Rank the entities of each alias by evidence, best first, and cut at max_candidates.
            order = np.lexsort((entity, -weight, alias))
            alias, entity, weight = alias[order], entity[order], weight[order]
            group_start = np.flatnonzero(np.r_[True, alias[1:] != alias[:-1]])
            group_sizes = np.diff(np.r_[group_start, len(alias)])
            totals = np.add.reduceat(weight, group_start)
            rank = np.arange(len(alias)) - np.repeat(group_start, group_sizes)
            kept = rank < max_candidates
            kept_sizes = np.minimum(group_sizes, max_candidates)
            alias_keys.extend(alias[group_start])
            alias_totals.extend(totals.astype(np.float32))
            offsets.extend(n_candidates + np.cumsum(kept_sizes))
            entities.extend(entity[kept].astype(np.int32))
            counts.extend(weight[kept].astype(np.float32))
            n_candidates += int(kept_sizes.sum())
            n_aliases += len(group_start)
        for writer in (alias_keys, alias_totals, offsets, entities, counts):
            writer.close()
        return n_aliases


class KBBuilder:
    """Builds a KB directory from any mix of inputs (see the module docstring).

    Use as a context manager: the KB is written when the `with` block ends,
    and nothing replaces `output` unless the block and the writing complete.
    An `output` that exists must be a KB (or an empty directory), unless
    `overwrite` is set.
    """

    def __init__(
        self,
        output: PathLike,
        *,
        language: str = "en",
        site: str = "enwiki",
        n_types: int = 1400,
        max_type_share: float = 0.5,
        min_type_count: int = 2,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        person_type: str = "Q5",
        label_weight: float = 1.0,
        alias_weight: float = 0.5,
        n_buckets: int = 64,
        progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.output = Path(output)
        self.overwrite = overwrite
        self.language = language
        self.site = site
        self.n_types = n_types
        self.max_type_share = max_type_share
        self.min_type_count = min_type_count
        self.max_candidates = max_candidates
        self.person_type = person_type
        self.weights = {
            Evidence.LABEL: label_weight,
            Evidence.ALIAS: alias_weight,
            Evidence.ANCHOR: 1.0,
            Evidence.REDIRECT: 1.0,
            Evidence.COUNT: 1.0,
        }
        self.n_buckets = n_buckets
        self.progress = progress
        self.sources: List[Dict[str, Any]] = []
        self.relation_labels: Dict[str, str] = {}
        self._popularity_files: List[Path] = []
        self.stats: Dict[str, Any] = {}

    def __enter__(self) -> "KBBuilder":
        self._staging = staging_directory(self.output, overwrite=self.overwrite)
        self.root = self._staging.__enter__()
        self.writer = SegmentWriter(self.root / BASE_SEGMENT, self.root / "_work", 0, self.n_buckets)
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._staging.__exit__(type(error), error, error.__traceback__)
                raise
        self._staging.__exit__(exc_type, exc, tb)

    def _bar(self, desc: str, unit: str):
        return tqdm(desc=desc, unit=unit, disable=not self.progress, mininterval=1.0)

    # ------------------------------------------------------------------ inputs

    def add_wikidata(self, path: PathLike, processes: int = 1) -> int:
        """Stream a Wikidata JSON dump (.json, .bz2 or .gz)."""
        n = 0
        with self._bar(f"wikidata {Path(path).name}", "entities") as bar:
            for record in read_wikidata(path, language=self.language, site=self.site, processes=processes):
                if record.kind == "property":
                    if record.label:
                        self.relation_labels[record.id] = record.label
                    continue
                self.writer.add_entity(EntityRecord.from_wikidata(record))
                n += 1
                bar.update()
        self.sources.append({"kind": "wikidata", "path": str(path), "entities": n})
        return n

    def add_entities_jsonl(self, path: PathLike) -> int:
        """Read the user's own entities: one JSON object per line."""
        n = 0
        for line, data in read_jsonl(path):
            try:
                record = EntityRecord.from_dict(data)
            except ValueError as error:
                raise DumpError(path, str(error), line=line) from None
            self.writer.add_entity(record)
            n += 1
        self.sources.append({"kind": "entities", "path": str(path), "entities": n})
        return n

    def add_wikipedia(self, path: PathLike) -> int:
        """Anchor texts and redirects of a Wikipedia pages-articles dump."""
        n_links = 0
        n_pages = 0
        with self._bar(f"wikipedia {Path(path).name}", "pages") as bar:
            for page in read_wikipedia(path):
                n_pages += 1
                bar.update()
                if page.redirect:
                    self.writer.redirects[0].append(get_string_id(page.title))
                    self.writer.redirects[1].append(get_string_id(page.redirect))
                    self.writer.evidence.add(page.title, get_string_id(page.redirect), Evidence.REDIRECT, 1.0)
                    continue
                for anchor, target in page.links:
                    self.writer.evidence.add(anchor, get_string_id(target), Evidence.ANCHOR, 1.0)
                    n_links += 1
        self.sources.append({"kind": "wikipedia", "path": str(path), "pages": n_pages, "links": n_links})
        return n_links

    def add_mention_counts(self, path: PathLike) -> int:
        """Mention -> entity counts: a TSV (mention, entity ID, count) or EL documents as JSONL."""
        n = 0
        for mention, entity_id, count in read_mention_counts(path):
            self.writer.evidence.add(mention, get_string_id(entity_id), Evidence.COUNT, count)
            n += 1
        self.sources.append({"kind": "mention_counts", "path": str(path), "rows": n})
        return n

    def add_popularity(self, path: PathLike) -> None:
        """Explicit popularity scores: TSV(.gz) of entity ID and score (e.g. PageRank)."""
        if not Path(path).exists():
            raise DumpError(path, "no such file")
        self._popularity_files.append(Path(path))
        self.sources.append({"kind": "popularity", "path": str(path)})

    # ------------------------------------------------------------------ output

    def _finish(self) -> None:
        writer = self.writer
        writer.close()
        if writer.n_entities == 0:
            raise KBError("no entities in the input: give a Wikidata dump or an entities JSONL file")
        type_ids, type_labels, type_counts, map_types = self._type_inventory()
        relation_ids = sorted(writer.relations, key=writer.relations.get)
        counts = writer.finish(
            popularity=percentile_popularity(self._popularity_files),
            map_types=map_types,
            relation_map=np.arange(len(relation_ids)),
            weights=self.weights,
            max_candidates=self.max_candidates,
        )
        write_json(
            self.root / TYPES_FILE,
            [
                {"id": t, "label": label, "entities": int(count)}
                for t, label, count in zip(type_ids, type_labels, type_counts)
            ],
        )
        write_json(
            self.root / RELATIONS_FILE, [{"id": r, "label": self.relation_labels.get(r, r)} for r in relation_ids]
        )
        segments = [{"name": BASE_SEGMENT, **counts}]
        self.stats = {
            "entities": counts["n_entities"],
            "aliases": counts["n_aliases"],
            "facts": counts["n_facts"],
            "types": len(type_ids),
            "relations": len(relation_ids),
            "seconds": round(time.perf_counter() - self._started, 2),
        }
        write_manifest(
            self.root,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "language": self.language,
                "type_hash": type_inventory_hash(type_ids),
                "person_type": self.person_type,
                "max_candidates": self.max_candidates,
                "segments": segments,
                "embeddings": None,
                "checksums": checksums(self.root, kb_files(self.root, {"segments": segments})),
                "counts": self.stats,
                "build": {
                    "sources": self.sources,
                    "n_types": self.n_types,
                    "max_type_share": self.max_type_share,
                    "min_type_count": self.min_type_count,
                    "weights": {kind.name.lower(): self.weights[kind] for kind in Evidence},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            },
        )

    def _type_inventory(self) -> Tuple[List[str], List[str], List[int], TypeMapper]:
        """Choose the type inventory (see the module docstring); returns
        (type IDs, labels, entity counts, raw type keys -> type indices).

        The types are counted entity by entity as the raw types stream from
        disk; the closures of classes and of type combinations are cached up
        to `TYPE_CACHE_SIZE` each (the frequent ones: "human", "city"), so
        memory does not grow with the number of entities or combinations."""
        superclasses = self.writer.superclasses

        @lru_cache(maxsize=TYPE_CACHE_SIZE)
        def closure(type_key: int) -> FrozenSet[int]:
            seen: Set[int] = {type_key}
            stack = [type_key]
            while stack:
                for parent in superclasses.get(stack.pop(), ()):
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            return frozenset(seen)

        @lru_cache(maxsize=TYPE_CACHE_SIZE)
        def types_of(raw: Tuple[int, ...]) -> FrozenSet[int]:
            return frozenset().union(*(closure(t) for t in raw))

        counts: Counter = Counter()
        typed = 0
        for raw in self.writer.iter_raw_types():
            types = types_of(raw)
            typed += bool(types)
            counts.update(types)
        names = self.writer.class_names
        eligible = [
            t
            for t, c in counts.items()
            if self.min_type_count <= c <= self.max_type_share * max(typed, 1) and t in names
        ]
        eligible.sort(key=lambda t: (-counts[t], names[t]))
        chosen = eligible[: self.n_types]
        type_ids = [names[t] for t in chosen]
        positions = self.writer.resolve(np.array(chosen, dtype=np.uint64))
        labels = StringTable.load(self.writer.directory, "labels")
        type_labels = [(labels[int(p)] if p >= 0 else "") or names[t] for t, p in zip(chosen, positions)]
        index = {t: i for i, t in enumerate(chosen)}

        @lru_cache(maxsize=TYPE_CACHE_SIZE)
        def map_types(raw: Tuple[int, ...]) -> List[int]:
            return sorted(index[t] for t in types_of(raw) if t in index)

        return type_ids, type_labels, [counts[t] for t in chosen], map_types


def percentile_popularity(files: Iterable[Path] = ()) -> PopularityRule:
    """The popularity rule of a build: the mean percentile rank of the signals
    the inputs provide, explicit scores (the entities' own, replaced by those
    of the `files`: TSVs of entity ID and score) and the number of sitelinks.
    A signal that does not vary is left out; without any, popularity is 0.
    Each signal is sorted out of memory and ranked a chunk at a time."""
    files = list(files)

    def popularity(writer: SegmentWriter) -> Iterator[np.ndarray]:
        n = writer.n_entities
        scores = writer.raw_popularity()
        if files:
            # The file's scores replace the entities' own: a float64 copy in the work directory.
            copy = np.lib.format.open_memmap(writer.work / "scores.npy", mode="w+", dtype=np.float64, shape=(n,))
            for first in range(0, n, CHUNK):
                copy[first : first + CHUNK] = scores[first : first + CHUNK]
                release(scores)
            for path in files:
                file_keys, file_scores = read_popularity(path)
                found = writer.resolve(file_keys)
                copy[found[found >= 0]] = file_scores[found >= 0]
            copy.flush()
            del copy
            scores = load_array(writer.work / "scores.npy")
        signals = []
        for name, values in (("scores", scores), ("sitelinks", writer.sitelinks())):
            ordered = _sorted_signal(values, writer.work / f"sorted-{name}.npy", writer.work / "sort")
            if len(ordered) and ordered[-1] > ordered[0]:
                signals.append((values, ordered))
        for first in range(0, n, CHUNK):
            if not signals:
                yield np.zeros(min(CHUNK, n - first), dtype=np.float32)
                continue
            ranks = [_percentile_rank(_signal(v[first : first + CHUNK]), ordered) for v, ordered in signals]
            for values, _ in signals:
                release(values)
            yield np.mean(ranks, axis=0).astype(np.float32)

    return popularity


def own_popularity(writer: SegmentWriter) -> Iterator[np.ndarray]:
    """The popularity rule of entities added to a KB: their own popularity
    (on the KB's percentile scale, [0, 1], as `append_segment` checks); 0 when absent.
    The KB's other entities keep theirs, so it cannot be ranked among them."""
    raw = writer.raw_popularity()
    for first in range(0, len(raw), CHUNK):
        yield np.nan_to_num(np.asarray(raw[first : first + CHUNK]), nan=0.0)
        release(raw)


@contextmanager
def writing(kb_path: PathLike) -> Iterator[RefinedKB]:
    """Hold the KB's write lock and yield the KB as it is now (its manifest
    read under the lock, so no other writer's work is overwritten). What
    killed writers left in the KB directory is removed first: their
    temporary files and staging directories, and segments that no manifest
    came to list.

    kb_path (str / Path): The KB directory.
    YIELDS (RefinedKB): The KB.
    """
    with write_lock(kb_path):
        kb = RefinedKB.load(kb_path)
        remove_litter(kb.path)
        listed = {info["name"] for info in kb.manifest["segments"]}
        for entry in kb.path.iterdir():
            if entry.is_dir() and SEGMENT_NAME.fullmatch(entry.name) and "-" in entry.name and entry.name not in listed:
                shutil.rmtree(entry, ignore_errors=True)
        yield kb


def commit(kb: RefinedKB, manifest: Dict[str, Any], written: Iterable[str]) -> None:
    """Write the manifest of a KB held by `writing`, with the checksums of the
    files `written` (relative names) recomputed and those of files no longer
    in the KB dropped: the last step of every write, atomic."""
    recorded = dict(manifest.get("checksums") or {})
    recorded.update(checksums(kb.path, written))
    names = set(kb_files(kb.path, manifest))
    manifest["checksums"] = {name: digest for name, digest in recorded.items() if name in names}
    write_manifest(kb.path, manifest)


def append_segment(
    kb_path: PathLike,
    entities: Union[PathLike, Iterable[Dict[str, Any]]],
    mention_counts: Iterable[Tuple[str, str, float]] = (),
) -> int:
    """Add entities to a built KB as a new segment, without rebuilding the KB
    or retraining a model. The KB's files are left as they are, except its
    manifest and relations; a KB object already open on `kb_path` sees the
    new entities after `RefinedKB.reload`. Concurrent calls (processes) are
    safe: each holds the KB's write lock, and each segment gets its own name.

    kb_path (str / Path): The KB directory.
    entities (Union[str, Path, Iterable[Dict[str, Any]]]): The entities, or
        a JSONL file of them (read as a stream; errors name its line): dicts
        with "id" and optionally "label", "aliases", "description", "title",
        "types" (IDs or labels from the KB's type inventory), "facts" and
        "popularity" (in [0, 1], the KB's percentile scale).
    mention_counts (Iterable[Tuple[str, str, float]]): (mention, entity ID,
        count) evidence for the new entities or the KB's own.
    RETURNS (int): The number of entities added.
    RAISES (KBError): If an entity is invalid or already in the KB, a type is
        not in the type inventory, or a count is negative; DumpError naming
        the file and line instead, for an entity of a file.
    """
    source = Path(entities) if isinstance(entities, (str, Path)) else None
    numbered = read_jsonl(source) if source is not None else enumerate(entities)

    def invalid(number: int, reason: str) -> Exception:
        return DumpError(source, reason, line=number) if source is not None else KBError(f"entity {number}: {reason}")

    with writing(kb_path) as kb:
        name = new_segment_name(kb.path, kb.manifest, "added")
        type_index = {t: i for i, t in enumerate(kb.type_ids)}
        type_index.update({label: i for i, label in enumerate(kb.type_labels) if label not in type_index})
        relation_ids = list(kb.relation_ids)
        with staging_directory(kb.path / name) as staging:
            writer = SegmentWriter(staging, staging / "_work", len(kb), n_buckets=1)
            for number, data in numbered:
                try:
                    record = EntityRecord.from_dict(data, popularity_range=(0.0, 1.0))
                except ValueError as error:
                    raise invalid(number, str(error)) from None
                unknown = [t for t in record.types if t not in type_index]
                if unknown:
                    raise invalid(
                        number,
                        f"entity {record.id!r}: types {unknown} are not in the KB's type inventory (see `kb info`)",
                    )
                if record.id in kb:
                    raise invalid(number, f"entity {record.id!r} is already in the KB at {kb.path}")
                writer.add_entity(record)
            for mention, entity_id, count in mention_counts:
                if not float(count) >= 0:
                    raise KBError(
                        f"mention count {count!r} for ({mention!r}, {entity_id!r}) is negative or not a number"
                    )
                writer.evidence.add(mention, get_string_id(entity_id), Evidence.COUNT, float(count))
            writer.close()
            if writer.n_entities == 0:
                raise KBError("no entities to add")

            def map_types(raw: Tuple[int, ...]) -> List[int]:
                return sorted({type_index[writer.class_names[k]] for k in raw if writer.class_names[k] in type_index})

            for relation in writer.relations:
                if relation not in relation_ids:
                    relation_ids.append(relation)
            built_with = kb.manifest["build"]["weights"]
            counts = writer.finish(
                popularity=own_popularity,
                map_types=map_types,
                relation_map=np.array(
                    [relation_ids.index(r) for r in sorted(writer.relations, key=writer.relations.get)],
                    dtype=np.int64,
                ),
                weights={kind: built_with[kind.name.lower()] for kind in Evidence},
                max_candidates=kb.max_candidates,
                kb=kb,
            )
        # Relations only grow, so the new list fits the old manifest too: a
        # crash before the manifest is written leaves a KB that opens.
        write_json(
            kb.path / RELATIONS_FILE,
            [
                {"id": r, "label": (kb.relation_labels[i] if i < len(kb.relation_labels) else r)}
                for i, r in enumerate(relation_ids)
            ],
        )
        manifest = dict(kb.manifest)
        manifest["segments"] = list(manifest["segments"]) + [{"name": name, **counts}]
        commit(
            kb,
            manifest,
            [RELATIONS_FILE] + segment_files(kb.path, name),
        )
    return counts["n_entities"]


def store_embeddings(kb_path: PathLike, segment: str, vectors: np.ndarray, model_info: Dict[str, Any]) -> None:
    """Store the description embeddings of one segment of a KB (float16), as
    `kb embed` computes them; under the KB's write lock, so that segments
    added meanwhile are kept. Embeddings of other segments computed by
    another encoder (`model_info["fingerprint"]`) are removed in the same
    step: they would not fit beside the new ones.

    kb_path (str / Path): The KB directory.
    segment (str): The segment's name (its directory).
    vectors (np.ndarray): (n_entities of the segment, width) embeddings.
    model_info (Dict[str, Any]): The encoder: "fingerprint", "width", ...;
        recorded in the manifest.
    RAISES (KBError): If the vectors are not finite or do not fit the
        segment, or the segment is gone (the KB was compacted meanwhile).
    """
    vectors = np.asarray(vectors)
    bad = int(np.count_nonzero(~np.isfinite(vectors).all(axis=-1))) if vectors.size else 0
    if bad:
        raise KBError(
            f"{bad} of the {len(vectors)} embeddings of segment {segment} are NaN or infinite: nothing stored"
        )
    with writing(kb_path) as kb:
        found = [s for s in kb.segments if s.path.name == segment]
        if not found:
            raise KBError(f"segment {segment} is no longer in the KB at {kb.path} (compacted meanwhile?): embed again")
        if vectors.ndim != 2 or len(vectors) != found[0].n_entities:
            raise KBError(
                f"embeddings of shape {vectors.shape} for segment {segment} of {found[0].n_entities} entities"
            )
        with atomic_file(found[0].path / EMBEDDINGS_FILE) as file_:
            save_array(file_, vectors.astype(np.float16))
        stored = kb.manifest.get("embeddings") or {}
        if stored.get("fingerprint") != model_info.get("fingerprint"):
            for other in kb.segments:
                if other is not found[0] and other.embeddings is not None:
                    (other.path / EMBEDDINGS_FILE).unlink()
        manifest = dict(kb.manifest)
        manifest["embeddings"] = model_info
        commit(kb, manifest, [f"{segment}/{EMBEDDINGS_FILE}"])


# ---------------------------------------------------------------------- helpers


def _sorted_pairs(pairs: Tuple[array, array]) -> Tuple[np.ndarray, np.ndarray]:
    keys = np.frombuffer(pairs[0], dtype=np.uint64) if len(pairs[0]) else np.zeros(0, np.uint64)
    values = np.frombuffer(pairs[1], dtype=np.uint64) if len(pairs[1]) else np.zeros(0, np.uint64)
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order]


def _map_keys(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, default: np.ndarray) -> np.ndarray:
    """`values` of the `wanted` keys in the sorted `keys`; `default` where a key is absent."""
    position = find_sorted(keys, wanted)
    return np.where(position >= 0, values[np.maximum(position, 0)] if len(values) else default, default).astype(
        np.uint64
    )


def _signal(values: np.ndarray) -> np.ndarray:
    """A popularity signal as it is ranked: float64, no NaN (0 instead)."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def _sorted_signal(values: np.ndarray, path: Path, work: Path) -> np.ndarray:
    """The signal `values`, sorted (out of memory) into the `.npy` file `path`, memory-mapped."""
    out = NpyAppender(path, "float64")
    for first in range(0, len(values), CHUNK):
        out.extend(_signal(values[first : first + CHUNK]))
        release(values)
    out.close()
    ordered = NpyAppender(path.with_name("ordered-" + path.name), "float64")
    for keys, _ in sorted_blocks(load_array(path), work):
        ordered.extend(keys)
    ordered.close()
    return load_array(ordered.path)


def _percentile_rank(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1] of `values` among the sorted `ordered`, ties sharing their mean rank."""
    if len(ordered) < 2:
        return np.zeros(len(values))
    left = np.searchsorted(ordered, values, side="left")
    right = np.searchsorted(ordered, values, side="right")
    return (left + right - 1) / 2.0 / (len(ordered) - 1)


def read_mention_counts(path: PathLike) -> Iterable[Tuple[str, str, float]]:
    """(mention, entity ID, count) rows from a TSV, or counted from EL documents (JSONL)."""
    path = Path(path)
    if ".jsonl" in path.suffixes:
        for line, doc in read_jsonl(path):
            text = doc.get("text") if isinstance(doc, dict) else None
            if not isinstance(text, str):
                raise DumpError(path, "a document needs a 'text' string", line=line)
            for label in doc.get("labels") or []:
                entity_id = label.get("entity_id")
                start, end = label.get("span", (None, None))
                if entity_status(entity_id) in (NIL, UNKNOWN) or not isinstance(start, int):
                    continue
                yield text[start:end], entity_id, 1.0
        return
    for line_number, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        try:
            count = float(parts[2]) if len(parts) > 2 else 1.0
            mention, entity_id = parts[0], parts[1].strip()
        except (IndexError, ValueError):
            raise DumpError(path, "expected 'mention<TAB>entity id<TAB>count'", line=line_number) from None
        if not entity_id:
            raise DumpError(path, "the entity ID is empty", line=line_number)
        if not count >= 0:
            raise DumpError(path, f"count {parts[2]!r} is negative or not a number", line=line_number)
        yield mention, entity_id, count


def read_popularity(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(entity ID keys, scores) from a TSV of entity ID and score."""
    keys = array("Q")
    scores = array("d")
    for line_number, line in read_lines(path):
        parts = line.split("\t")
        if len(parts) < 2:
            if line.strip():
                raise DumpError(path, "expected 'entity id<TAB>score'", line=line_number)
            continue
        try:
            score = float(parts[1])
        except ValueError:
            score = math.nan
        if math.isnan(score):
            raise DumpError(path, f"score {parts[1].strip()!r} is not a number", line=line_number)
        if not parts[0].strip():
            raise DumpError(path, "the entity ID is empty", line=line_number)
        scores.append(score)
        keys.append(get_string_id(parts[0].strip()))
    return np.frombuffer(keys, dtype=np.uint64), np.frombuffer(scores, dtype=np.float64)
