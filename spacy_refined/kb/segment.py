"""One segment of a KB: a directory of memory-mapped arrays.

A KB is a base segment (written by `kb build`) plus zero or more small
segments appended by `RefinedKB.add_entities`. Entity indices are global:
segment `s` holds the indices `[start, start + n_entities)`.
"""
from pathlib import Path
from typing import Optional

import numpy as np

from ..util import sorted_positions
from .arrays import StringTable, load_array
from .errors import KBError

SEGMENT_ARRAYS = (
    "entity_keys",  # uint64 sorted: spaCy string hash of each entity ID
    "entity_key_rows",  # int32: local row of each sorted key
    "title_keys",  # uint64 sorted: spaCy string hash of each Wikipedia title
    "title_key_rows",  # int32: local row of each sorted title key
    "entity_alias_offsets",  # int64 CSR into the `entity_aliases` strings
    "popularity",  # float32 in [0, 1]
    "type_offsets",  # int64 CSR per local entity into `type_values`
    "type_values",  # int32 indices into the KB's type inventory
    "alias_keys",  # uint64 sorted: spaCy string hash of each normalised alias
    "alias_totals",  # float32: total evidence of the alias (all entities)
    "candidate_offsets",  # int64 CSR per alias into the candidate arrays
    "candidate_entities",  # int32 global entity indices, best first
    "candidate_counts",  # float32 evidence per (alias, entity)
    "fact_subjects",  # int32 global, sorted
    "fact_relations",  # int32 indices into the KB's relation inventory
    "fact_objects",  # int32 global
    "fact_object_order",  # int64 permutation sorting the facts by object
    "fact_objects_sorted",  # int32: fact_objects[fact_object_order]
)
SEGMENT_STRINGS = ("entity_ids", "labels", "descriptions", "entity_aliases", "entity_titles")
EMBEDDINGS_FILE = "embeddings.npy"


class Segment:
    """Read-only view of one segment directory."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = Path(path)
        self.start = start
        missing = [f"{name}.npy" for name in SEGMENT_ARRAYS if not (self.path / f"{name}.npy").exists()]
        missing += [f"{name}.offsets.npy" for name in SEGMENT_STRINGS if not (self.path / f"{name}.offsets.npy").exists()]
        if missing:
            raise KBError(f"KB segment {self.path} is incomplete or from another spacy-refined version: missing {', '.join(missing)}")
        for name in SEGMENT_ARRAYS:
            setattr(self, name, load_array(self.path / f"{name}.npy"))
        for name in SEGMENT_STRINGS:
            setattr(self, name, StringTable.load(self.path, name))
        self.n_entities = len(self.entity_ids)
        embeddings_path = self.path / EMBEDDINGS_FILE
        self.embeddings: Optional[np.ndarray] = load_array(embeddings_path) if embeddings_path.exists() else None

    @property
    def end(self) -> int:
        return self.start + self.n_entities

    def find_entities(self, keys: np.ndarray) -> np.ndarray:
        """Global indices of the entities with these ID keys (-1 where absent)."""
        return find_sorted(self.entity_keys, keys, self.entity_key_rows, self.start)

    def find_titles(self, keys: np.ndarray) -> np.ndarray:
        """Global indices of the entities with these Wikipedia title keys (-1 where absent)."""
        return find_sorted(self.title_keys, keys, self.title_key_rows, self.start)

    def find_aliases(self, keys: np.ndarray) -> np.ndarray:
        """Alias rows of these alias keys (-1 where absent)."""
        return find_sorted(self.alias_keys, keys)


def find_sorted(sorted_keys: np.ndarray, keys: np.ndarray, rows: Optional[np.ndarray] = None, offset: int = 0) -> np.ndarray:
    """Positions of `keys` in `sorted_keys` (mapped through `rows`, plus `offset`); -1 where absent or 0."""
    keys = np.asarray(keys, dtype=np.uint64)
    result = np.full(len(keys), -1, dtype=np.int64)
    position = sorted_positions(sorted_keys, keys)
    found = (position >= 0) & (keys != 0)
    hits = position[found]
    result[found] = (rows[hits] if rows is not None else hits) + offset
    return result
