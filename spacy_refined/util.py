"""Generic helpers shared by every room of the package: path types,
vectorised operations on sorted and CSR-shaped numpy arrays, and reading
(possibly compressed) input files."""

import bz2
import ctypes
import ctypes.util
import gzip
import io
import json
import shutil
import subprocess
import zlib
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Iterator, List, Optional, TextIO, Tuple, Union

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


def release_free_memory() -> None:
    """Return the heap's free pages to the system (glibc's `malloc_trim`;
    nothing elsewhere). A long run of batches of varying sizes leaves the C
    heap fragmented, with freed memory the allocator keeps between
    batches; giving it back now and then lowers what the process holds
    while it waits (its peaks are set by the batch size)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`starts[i] + j` for every `j < lengths[i]`, row after row (int64): the
    flat indices of runs such as CSR rows or the tokens of spans."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def time_major_order(lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The layout of PyTorch's `PackedSequence`, without padding: sequences
    laid end to end (the tokens of a batch's documents) are read step by step,
    the sequences sorted longest first (ties in input order), and at step `t`
    only the `batch_sizes[t]` sequences longer than `t` take part. Memory is
    linear in the total length, whatever the longest sequence.

    lengths (np.ndarray): The sequences' lengths (zeros allowed).
    RETURNS (Tuple[np.ndarray, np.ndarray]): The flat index of each element in
        time-major order, (sum(lengths),) int64, and the batch size of each
        step, (max(lengths),) int64.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    max_length = int(sorted_lengths[0]) if len(lengths) else 0
    # Sequences longer than t: a prefix of the sorted ones.
    batch_sizes = np.searchsorted(-sorted_lengths, -np.arange(max_length), side="left").astype(np.int64)
    step = np.repeat(np.arange(max_length, dtype=np.int64), batch_sizes)
    rank = np.arange(len(step), dtype=np.int64) - np.repeat(np.cumsum(batch_sizes) - batch_sizes, batch_sizes)
    return (np.cumsum(lengths) - lengths)[order][rank] + step, batch_sizes


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


# ------------------------------------------------------------------ input files

# Errors raised by bz2/gzip on truncated or corrupt compressed data.
STREAM_ERRORS = (EOFError, OSError, zlib.error)
# Parallel decompressors used when installed: bzip2 blocks decompress
# independently, so lbzip2 scales with cores; Python's bz2 uses one.
PARALLEL_DECOMPRESSORS = {b"BZh": ("lbzip2", "pbzip2"), b"\x1f\x8b": ("pigz",)}


class DumpError(ValueError):
    """An input file (a dump, entities, counts, documents) is missing,
    malformed, truncated or unreadable. The message names the file and, where
    known, the line, column and byte offset (counted in the uncompressed data).
    """

    def __init__(
        self,
        path: PathLike,
        reason: str,
        *,
        line: Optional[int] = None,
        column: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.column = column
        self.offset = offset
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        position = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{self.path}{position}: {reason}")

    def __reduce__(self):
        # Keep the exception (and its subclasses) picklable, e.g. when raised in a worker process.
        rebuild = partial(type(self), line=self.line, column=self.column, offset=self.offset)
        return (rebuild, (self.path, self.reason))


class _DecompressorPipe(io.RawIOBase):
    """The output of a decompressor process, read as a file; a failure of
    the process (truncated or corrupt input) raises OSError at its end."""

    def __init__(self, command: List[str]) -> None:
        self.command = command
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        n = self.process.stdout.readinto(buffer)
        self.position += n
        if not n and self.process.wait() != 0:
            message = self.process.stderr.read().decode("utf8", "replace").strip()
            raise OSError(f"{self.command[0]} failed: {message}")
        return n

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.stdout.close()
        self.process.stderr.close()
        self.process.wait()
        super().close()


def open_binary(path: PathLike, parallel: bool = True) -> BinaryIO:
    """Open a plain, bzip2 or gzip file for binary reading. The compression is
    detected from the magic bytes, so a misnamed file still opens.

    path (str / Path): The file.
    parallel (bool): Let an installed parallel decompressor (lbzip2, pbzip2,
        pigz) do the work in another process.
    RETURNS (BinaryIO): The uncompressed bytes.
    RAISES (DumpError): If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DumpError(path, "no such file")
    with path.open("rb") as file_:
        magic = file_.read(3)
    kind = b"BZh" if magic == b"BZh" else magic[:2]
    tool = next((t for t in PARALLEL_DECOMPRESSORS.get(kind, ()) if shutil.which(t)), None) if parallel else None
    if tool is not None:
        return io.BufferedReader(_DecompressorPipe([tool, "-dc", str(path)]), buffer_size=1 << 20)
    if kind == b"BZh":
        return bz2.open(path, "rb")
    if kind == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


def open_text(path: PathLike) -> TextIO:
    """Open a plain, bzip2 or gzip UTF-8 text file (see `open_binary`). To
    read it line by line, `read_lines` turns bad input into `DumpError`s.

    path (str / Path): The file.
    RETURNS (TextIO): The uncompressed text.
    RAISES (DumpError): If the file does not exist.
    """
    return io.TextIOWrapper(open_binary(path), encoding="utf8")


def read_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """Read a plain, bzip2 or gzip UTF-8 text file line by line (the
    compression is detected from the magic bytes, see `open_binary`).

    path (str / Path): The file.
    YIELDS (Tuple[int, str]): The 1-based line number and the text of each line.
    RAISES (DumpError): If the file does not exist, a line is not valid UTF-8,
        or the compressed stream is truncated or corrupt.
    """
    line_number = 0
    with open_binary(path) as file_:
        try:
            for line_number, line in enumerate(file_, 1):
                try:
                    text = line.decode("utf8")
                except UnicodeDecodeError as error:
                    reason = f"not valid UTF-8 (byte {error.start + 1} of the line: {error.reason})"
                    raise DumpError(path, reason, line=line_number) from None
                yield line_number, text[:-2] + "\n" if text.endswith("\r\n") else text
        except STREAM_ERRORS as error:
            reason = f"truncated or corrupt compressed stream ({error})"
            raise DumpError(path, reason, line=line_number + 1) from None


def read_jsonl(path: PathLike) -> Iterator[Tuple[int, Any]]:
    """Read a JSONL file, plain or compressed.

    path (str / Path): The file.
    YIELDS (Tuple[int, Any]): The 1-based line number and the object of each
        non-blank line.
    RAISES (DumpError): If the file does not exist, is not valid UTF-8, is
        truncated, or a line is not valid JSON.
    """
    for line_number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            raise DumpError(path, f"not valid JSON ({error})", line=line_number) from None
        yield line_number, value
