"""Description embeddings of KB entities computed on the fly, cached by KB index."""

from typing import Tuple

import numpy as np

from ..util import sorted_positions


class EmbeddingCache:
    """Description embeddings computed on the fly, keyed by KB index.

    Stored as float16, like precomputed KB embeddings, so both give the same
    scores. Bounded: when full, it starts again empty.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.clear()

    def clear(self) -> None:
        self.keys = np.zeros(0, dtype="int64")
        self.vectors = np.zeros((0, 0), dtype="float16")

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(vectors of the cached indices (float32), mask of the cached indices)."""
        if not len(self.keys) or not len(indices):
            return np.zeros((0, 0), dtype="float32"), np.zeros(len(indices), dtype=bool)
        position = sorted_positions(self.keys, indices)
        found = position >= 0
        return self.vectors[position[found]].astype("float32"), found

    def add(self, indices: np.ndarray, vectors: np.ndarray) -> None:
        if len(self.keys) + len(indices) > self.max_size:
            self.clear()
        if not len(self.keys):
            self.vectors = np.zeros((0, vectors.shape[1]), dtype="float16")
        keys = np.concatenate([self.keys, indices])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.vectors = np.concatenate([self.vectors, vectors.astype("float16")])[order]
