"""On-disk arrays of the KB: `.npy` files written by streaming, read by mmap,
and sorted out of memory (`sorted_blocks`), so that writing a KB takes
memory bounded by these constants, not by its size."""

import mmap
import shutil
from array import array
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Tuple, Union

import numpy as np

from ..util import PathLike
from .errors import KBError

# Values an `NpyAppender` buffers before writing them out.
_FLUSH_ITEMS = 1 << 16
# Values sorted in memory at once by `sorted_blocks` (one run), and read at once from all runs while merging.
SORT_CHUNK = 1 << 18
MERGE_BLOCK = 1 << 18


class NpyAppender:
    """Write a 1-d `.npy` file whose length is unknown in advance.

    Values are buffered, flushed to a raw side file, and framed with the
    `.npy` header on `close`, so memory stays bounded whatever the length.
    """

    def __init__(self, path: PathLike, dtype: str) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self._raw_path = self.path.with_name(self.path.name + ".raw")
        self._raw = open(self._raw_path, "wb")
        self._buffer = array(self.dtype.char)
        self.length = 0

    def append(self, value) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= _FLUSH_ITEMS:
            self._flush()

    def extend(self, values: Union[Iterable, np.ndarray]) -> None:
        if isinstance(values, np.ndarray):
            self._flush()
            data = np.ascontiguousarray(values, dtype=self.dtype)
            self._raw.write(data.tobytes())
            self.length += len(data)
        else:
            self._buffer.extend(values)
            if len(self._buffer) >= _FLUSH_ITEMS:
                self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._raw.write(self._buffer.tobytes())
            self.length += len(self._buffer)
            self._buffer = array(self.dtype.char)

    def close(self) -> None:
        self._flush()
        self._raw.close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.length,)}
        with open(self.path, "wb") as out, open(self._raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, 1 << 24)
        self._raw_path.unlink()


class StringTableWriter:
    """Stream strings into `<name>.data.npy` (UTF-8 bytes) and `<name>.offsets.npy`."""

    def __init__(self, directory: PathLike, name: str) -> None:
        directory = Path(directory)
        data_file, offsets_file = StringTable.files(name)
        self._data = NpyAppender(directory / data_file, "uint8")
        self._offsets = NpyAppender(directory / offsets_file, "int64")
        self._offsets.append(0)
        self._end = 0
        self._pending: List[bytes] = []
        self._pending_size = 0

    def append(self, text: str) -> None:
        encoded = text.encode("utf8")
        self._end += len(encoded)
        self._offsets.append(self._end)
        self._pending.append(encoded)
        self._pending_size += len(encoded)
        if self._pending_size >= (1 << 22):
            self._flush()

    def extend(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.append(text)

    def _flush(self) -> None:
        if self._pending:
            self._data.extend(np.frombuffer(b"".join(self._pending), dtype=np.uint8))
            self._pending = []
            self._pending_size = 0

    def close(self) -> None:
        self._flush()
        self._data.close()
        self._offsets.close()


class StringTable:
    """Read-only table of strings backed by two (memory-mapped) arrays."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.offsets = offsets

    @staticmethod
    def files(name: str) -> Tuple[str, str]:
        """The file names of the table `name`: its UTF-8 data and its offsets."""
        return f"{name}.data.npy", f"{name}.offsets.npy"

    @classmethod
    def load(cls, directory: PathLike, name: str) -> "StringTable":
        directory = Path(directory)
        data_file, offsets_file = cls.files(name)
        return cls(load_array(directory / data_file), load_array(directory / offsets_file))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.data[start:end].tobytes().decode("utf8")

    def get_many(self, indices: Sequence[int]) -> List[str]:
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self.offsets[indices].tolist(), self.offsets[indices + 1].tolist()
        data = self.data
        return [data[a:b].tobytes().decode("utf8") for a, b in zip(starts, ends)]


def load_array(path: PathLike) -> np.ndarray:
    """Open an `.npy` file by mmap (empty arrays, which cannot be mapped, are read).

    path (str / Path): The file.
    RETURNS (np.ndarray): The array.
    RAISES (KBError): If the file is missing, empty, truncated or not an `.npy` array.
    """
    try:
        # A plain ndarray view of the map: indexing a np.memmap subclass is slower.
        return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    except FileNotFoundError:
        raise KBError(f"{path} is missing: the KB is incomplete") from None
    except (ValueError, EOFError, OSError) as error:
        reason = str(error) or type(error).__name__
        raise KBError(f"{path}: not a readable .npy array, the file is damaged or truncated ({reason})") from None


def release(values: np.ndarray) -> None:
    """Unmap the pages of a memory-mapped array read so far from this process
    (they stay in the page cache, and are mapped again when next read), so
    that scanning a large file a chunk at a time holds one chunk in memory,
    not every page read. Arrays not backed by a read-only map are left alone."""
    base = values
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if isinstance(base, mmap.mmap) and hasattr(base, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


def save_array(path: PathLike, values: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(values), allow_pickle=False)


def sorted_blocks(keys: np.ndarray, work: PathLike, skip_zero: bool = False) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The positions of `keys` in (key, position) order, the order of a stable
    argsort, in consecutive blocks of (keys, positions as int64).

    Memory is bounded by `SORT_CHUNK` and `MERGE_BLOCK`, not by the length of
    `keys` (e.g. a memory-mapped array): chunks are sorted into run files in
    `work`, which are then merged block by block and removed.

    keys (np.ndarray): 1-d keys of any orderable dtype (no NaN).
    work (str / Path): A directory for the runs.
    skip_zero (bool): Leave out the positions whose key is 0.
    YIELDS (Tuple[np.ndarray, np.ndarray]): Sorted keys and their positions.
    """
    runs: List[_Run] = []
    work = Path(work)
    try:
        for first in range(0, len(keys), SORT_CHUNK):
            part = np.asarray(keys[first : first + SORT_CHUNK])
            rows = np.flatnonzero(part) if skip_zero else np.arange(len(part))
            rows = rows[np.argsort(part[rows], kind="stable")]
            if len(keys) <= SORT_CHUNK:
                if len(rows):
                    yield part[rows], rows.astype(np.int64)
                return
            work.mkdir(parents=True, exist_ok=True)
            runs.append(_Run(work / f"run-{len(runs):05d}", part[rows], rows.astype(np.int64) + first))
            release(keys)
        yield from _merge(runs)
    finally:
        for run in runs:
            run.remove()


class _Run:
    """One sorted run of `sorted_blocks` on disk, read a block at a time."""

    def __init__(self, path: Path, keys: np.ndarray, rows: np.ndarray) -> None:
        self.paths = (path.with_suffix(".keys"), path.with_suffix(".rows"))
        keys.tofile(self.paths[0])
        rows.tofile(self.paths[1])
        self.dtype = keys.dtype
        self.length = len(keys)
        self.read_to = 0
        self.keys = keys[:0]
        self.rows = rows[:0]

    def fill(self, block: int) -> None:
        """Top the buffer up to `block` values, if it is under half of that."""
        if len(self.keys) >= block // 2 or self.read_to >= self.length:
            return
        count = min(block - len(self.keys), self.length - self.read_to)
        keys = np.fromfile(self.paths[0], self.dtype, count, offset=self.read_to * self.dtype.itemsize)
        rows = np.fromfile(self.paths[1], np.int64, count, offset=self.read_to * 8)
        self.keys, self.rows = np.concatenate([self.keys, keys]), np.concatenate([self.rows, rows])
        self.read_to += count

    def take(self, n: int) -> Tuple[np.ndarray, np.ndarray]:
        keys, rows = self.keys[:n], self.rows[:n]
        self.keys, self.rows = self.keys[n:], self.rows[n:]
        return keys, rows

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def _merge(runs: List[_Run]) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Merge sorted runs: each round takes, from every run's buffer, the values
    up to the least (key, position) that ends a buffer with more to come."""
    block = max(2, MERGE_BLOCK // max(len(runs), 1))
    while True:
        for run in runs:
            run.fill(block)
        active = [run for run in runs if len(run.keys)]
        if not active:
            return
        pending = [run for run in active if run.read_to < run.length]
        if pending:
            bound = min(pending, key=lambda run: (run.keys[-1].item(), run.rows[-1].item()))
            key, row = bound.keys[-1], bound.rows[-1]
            parts = []
            for run in active:
                low, high = np.searchsorted(run.keys, key, "left"), np.searchsorted(run.keys, key, "right")
                parts.append(run.take(int(low + np.searchsorted(run.rows[low:high], row, "right"))))
        else:
            parts = [run.take(len(run.keys)) for run in active]
        keys = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        order = np.lexsort((rows, keys))
        yield keys[order], rows[order]
