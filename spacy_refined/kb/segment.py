"""One segment of a KB: a directory of memory-mapped arrays.

A KB is a base segment (written by `kb build`) plus zero or more small
segments appended by `kb.builder.append_segment`. Entity indices are global:
segment `s` holds the indices `[start, start + n_entities)`. The arrays are
listed in `format.SEGMENT_ARRAYS`.
"""

from pathlib import Path
from typing import Optional

import numpy as np

from ..util import sorted_positions
from .arrays import StringTable, load_array
from .errors import KBError
from .format import EMBEDDINGS_FILE, SEGMENT_ARRAYS, SEGMENT_STRINGS, directory_nbytes, missing_segment_files


class Segment:
    """Read-only view of one segment directory."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = Path(path)
        self.start = start
        missing = missing_segment_files(self.path)
        if missing:
            raise KBError(
                f"KB segment {self.path} is incomplete or from another spacy-refined version: missing {', '.join(missing)}"
            )
        for array in SEGMENT_ARRAYS.values():
            setattr(self, array.name, load_array(self.path / array.file))
        for name in SEGMENT_STRINGS:
            setattr(self, name, StringTable.load(self.path, name))
        self.n_entities = len(self.entity_ids)
        embeddings_path = self.path / EMBEDDINGS_FILE
        self.embeddings: Optional[np.ndarray] = load_array(embeddings_path) if embeddings_path.exists() else None

    @property
    def end(self) -> int:
        return self.start + self.n_entities

    @property
    def nbytes(self) -> int:
        """Size of the segment's files on disk, in bytes."""
        return directory_nbytes(self.path)

    def find_entities(self, keys: np.ndarray) -> np.ndarray:
        """Global indices of the entities with these ID keys (-1 where absent)."""
        return find_sorted(self.entity_keys, keys, self.entity_key_rows, self.start)

    def find_titles(self, keys: np.ndarray) -> np.ndarray:
        """Global indices of the entities with these Wikipedia title keys (-1 where absent)."""
        return find_sorted(self.title_keys, keys, self.title_key_rows, self.start)

    def find_aliases(self, keys: np.ndarray) -> np.ndarray:
        """Alias rows of these alias keys (-1 where absent)."""
        return find_sorted(self.alias_keys, keys)


def find_sorted(
    sorted_keys: np.ndarray, keys: np.ndarray, rows: Optional[np.ndarray] = None, offset: int = 0
) -> np.ndarray:
    """Positions of `keys` in `sorted_keys` (mapped through `rows`, plus `offset`); -1 where absent or 0."""
    keys = np.asarray(keys, dtype=np.uint64)
    result = np.full(len(keys), -1, dtype=np.int64)
    position = sorted_positions(sorted_keys, keys)
    found = (position >= 0) & (keys != 0)
    hits = position[found]
    result[found] = (rows[hits] if rows is not None else hits) + offset
    return result
