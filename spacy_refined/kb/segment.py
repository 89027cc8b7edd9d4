"""One segment of a KB: a directory of memory-mapped arrays.

A KB is a base segment (written by `kb build`) plus zero or more small
segments appended by `kb.builder.append_segment`. Entity indices are global:
segment `s` holds the indices `[start, start + n_entities)`. The arrays are
listed in `format.SEGMENT_ARRAYS`.

Opening a segment checks its structure cheaply (dtypes, the lengths the
arrays must share, the ends of each CSR), so a damaged or tampered file is
named at once instead of giving wrong answers later; `check` (run by
`kb verify`) reads every value.
"""

from pathlib import Path
from typing import List, Optional

import numpy as np

from ..util import sorted_positions
from .arrays import StringTable, load_array
from .errors import KBError
from .format import EMBEDDINGS_FILE, SEGMENT_ARRAYS, SEGMENT_STRINGS, directory_nbytes, missing_segment_files

# (offsets, the values they index) of the segment's CSRs, the string tables' aside.
_CSRS = (
    ("entity_alias_offsets", "entity_aliases"),
    ("type_offsets", "type_values"),
    ("candidate_offsets", "candidate_entities"),
)


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
        self._check_structure()

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

    # ----------------------------------------------------------------- checks

    def _file(self, name: str) -> Path:
        return self.path / (SEGMENT_ARRAYS[name].file if name in SEGMENT_ARRAYS else f"{name}.offsets.npy")

    def _check_structure(self) -> None:
        """The checks that cost no more than a few reads: KBError naming the first bad file."""
        for array in SEGMENT_ARRAYS.values():
            values = getattr(self, array.name)
            if values.ndim != 1 or values.dtype != np.dtype(array.dtype):
                raise KBError(
                    f"{self._file(array.name)}: a {values.ndim}-d {values.dtype} array where the KB format has a 1-d {array.dtype} one"
                )
        n = self.n_entities
        lengths = {
            "entity_keys": n,
            "entity_key_rows": n,
            "popularity": n,
            "entity_alias_offsets": n + 1,
            "type_offsets": n + 1,
            "title_key_rows": len(self.title_keys),
            "alias_totals": len(self.alias_keys),
            "candidate_offsets": len(self.alias_keys) + 1,
            "candidate_counts": len(self.candidate_entities),
            "fact_relations": len(self.fact_subjects),
            "fact_objects": len(self.fact_subjects),
            "fact_object_order": len(self.fact_subjects),
            "fact_objects_sorted": len(self.fact_subjects),
        }
        lengths.update({name: n for name in ("labels", "descriptions", "entity_titles")})
        for name, expected in lengths.items():
            actual = len(getattr(self, name))
            if actual != expected:
                raise KBError(f"{self._file(name)}: {actual} rows where the segment needs {expected}")
        for name in SEGMENT_STRINGS:
            table = getattr(self, name)
            self._check_csr_ends(f"{name}.offsets", table.offsets, len(table.data))
        for offsets, values in _CSRS:
            self._check_csr_ends(offsets, getattr(self, offsets), len(getattr(self, values)))
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != n):
            raise KBError(
                f"{self.path / EMBEDDINGS_FILE}: embeddings of shape {self.embeddings.shape} for a segment of {n} entities"
            )

    def _check_csr_ends(self, name: str, offsets: np.ndarray, n_values: int) -> None:
        if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != n_values:
            file_ = self.path / f"{name}.npy"
            raise KBError(f"{file_}: offsets do not span the {n_values} values they index (damaged or tampered)")

    def check(self, n_total: int, n_types: int, n_relations: int) -> List[str]:
        """Read every value and return what is wrong (empty: nothing): offsets
        that go back, keys out of order, indices out of range, popularity
        outside [0, 1], embeddings that are not finite. Used by `kb verify`.

        n_total (int): Entities in the whole KB (the range of global indices).
        n_types (int): Types in the KB's inventory.
        n_relations (int): Relations in the KB's inventory.
        RETURNS (List[str]): One line per problem, naming the file.
        """
        problems: List[str] = []

        def expect(ok: bool, name: str, what: str) -> None:
            if not ok:
                problems.append(f"{self._file(name) if name != EMBEDDINGS_FILE else self.path / name}: {what}")

        def within(values: np.ndarray, low: int, high: int) -> bool:
            return not len(values) or (int(values.min()) >= low and int(values.max()) < high)

        def increasing(values: np.ndarray, strict: bool) -> bool:
            values = np.asarray(values)  # compared, not subtracted: keys are unsigned
            return bool(np.all(values[1:] > values[:-1]) if strict else np.all(values[1:] >= values[:-1]))

        n = self.n_entities
        for offsets, _ in _CSRS:
            expect(increasing(getattr(self, offsets), strict=False), offsets, "offsets go back")
        for name in SEGMENT_STRINGS:
            expect(increasing(getattr(self, name).offsets, strict=False), name, "offsets go back")
        for keys in ("entity_keys", "title_keys", "alias_keys"):
            expect(increasing(getattr(self, keys), strict=True), keys, "keys not sorted or repeated")
        rows = np.asarray(self.entity_key_rows)
        expect(np.array_equal(np.sort(rows), np.arange(n)), "entity_key_rows", "not a permutation of the rows")
        expect(within(self.title_key_rows, 0, n), "title_key_rows", "rows out of range")
        expect(within(self.type_values, 0, n_types), "type_values", "types out of range")
        expect(within(self.candidate_entities, 0, n_total), "candidate_entities", "entities out of range")
        expect(within(self.fact_subjects, self.start, self.end), "fact_subjects", "entities out of range")
        expect(increasing(self.fact_subjects, strict=False), "fact_subjects", "not sorted")
        expect(within(self.fact_objects, 0, n_total), "fact_objects", "entities out of range")
        expect(within(self.fact_relations, 0, n_relations), "fact_relations", "relations out of range")
        order = np.asarray(self.fact_object_order)
        expect(np.array_equal(np.sort(order), np.arange(len(order))), "fact_object_order", "not a permutation")
        if len(order) == len(self.fact_objects) and within(order, 0, len(order)):
            expect(
                np.array_equal(np.asarray(self.fact_objects)[order], self.fact_objects_sorted),
                "fact_objects_sorted",
                "not fact_objects in fact_object_order",
            )
        popularity = np.asarray(self.popularity)
        expect(bool(np.all((popularity >= 0) & (popularity <= 1))), "popularity", "values outside [0, 1] or NaN")
        if self.embeddings is not None:
            expect(bool(np.all(np.isfinite(self.embeddings))), EMBEDDINGS_FILE, "NaN or infinite values")
        return problems


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
