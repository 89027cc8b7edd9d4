"""Generic helpers shared by every room of the package: path types and
vectorised operations on sorted and CSR-shaped numpy arrays."""
from pathlib import Path
from typing import Tuple, Union

import numpy as np

PathLike = Union[str, Path]


def sorted_positions(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Positions of `keys` in the sorted array `sorted_keys`; -1 where absent."""
    keys = np.asarray(keys)
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    position = np.searchsorted(sorted_keys, keys)
    np.minimum(position, len(sorted_keys) - 1, out=position)
    return np.where(sorted_keys[position] == keys, position, -1)


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`starts[i] + j` for every `j < lengths[i]`, row after row (int64): the
    flat indices of runs such as CSR rows or the tokens of spans."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def csr_gather(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray, limit: int = 0):
    """Vectorised gather of CSR rows: returns (row_lengths, flat_values).

    `limit` > 0 keeps at most that many leading values of each row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = offsets[rows].astype(np.int64)
    lengths = offsets[rows + 1].astype(np.int64) - starts
    if limit > 0:
        lengths = np.minimum(lengths, limit)
    total = int(lengths.sum())
    if total == 0:
        return lengths, values[:0]
    return lengths, values[concatenated_ranges(starts, lengths)]
