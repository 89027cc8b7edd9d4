"""Documents in (JSONL, plain text, Parquet), linked records out (JSONL, Parquet), in shards.

Input records are numbered by their position: the 1-based line of a JSONL
or text file, the 1-based row of a Parquet file. Shard `k` holds positions
`k * shard_size + 1` to `(k + 1) * shard_size`, so a finished shard is
skipped on a rerun without parsing it, and malformed records are reported
by the position a user can look up.

A shard is written to a hidden temporary file and renamed when complete:
the rename is the atomic mark that the shard is done. Its statistics
(records read, linked, skipped with their positions and reasons) are
written before it, next to it.
"""

import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import orjson
from tqdm import tqdm

from ..util import DumpError, PathLike, open_binary
from .records import from_arrow, require_pyarrow, to_arrow

INPUT_FORMATS = ("jsonl", "text", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
ON_ERROR = ("fail", "skip")
# Documents per batch by engine when not given: small locally, where the batch
# sets the peak memory and not the speed; larger on Ray, whose actors link
# measurably slower in small batches.
DEFAULT_BATCH_SIZE = {"local": 16, "ray": 64}
JOB_FILE = "job.json"
SUMMARY_FILE = "summary.json"
SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet"}


class RecordError(ValueError):
    """A malformed input record: its position and what is wrong."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"{position}: {reason}")

    def __reduce__(self):
        return (type(self), (self.position, self.reason))


def detect_input_format(path: PathLike, fmt: str = "auto") -> str:
    """The format of an input file: `fmt`, or by suffix when "auto" (.parquet,
    .txt, else JSONL; a .gz / .bz2 suffix is looked through).

    RAISES (DumpError): If `fmt` is not "auto" or one of `INPUT_FORMATS`.
    """
    if fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise DumpError(path, f"input format {fmt!r}: choose auto or one of {', '.join(INPUT_FORMATS)}")
        return fmt
    suffixes = [s for s in Path(path).suffixes if s not in (".gz", ".bz2")]
    suffix = suffixes[-1].lower() if suffixes else ""
    return {".parquet": "parquet", ".txt": "text"}.get(suffix, "jsonl")


def position_name(fmt: str) -> str:
    """What a position is called in messages: "row" (Parquet) or "line"."""
    return "row" if fmt == "parquet" else "line"


def iter_raw(path: PathLike, fmt: str) -> Iterator[Tuple[int, Any]]:
    """Stream the raw records of an input file, unparsed.

    path (str / Path): The file (JSONL and text: plain, gzip or bzip2).
    fmt (str): One of `INPUT_FORMATS`.
    YIELDS (Tuple[int, Any]): The position and the raw record: a line's bytes
        (JSONL, text) or an (id, text) pair (Parquet). Blank JSONL lines are
        not records.
    RAISES (DumpError): If the file does not exist or is not Parquet.
    """
    if fmt == "parquet":
        yield from _iter_parquet(path)
        return
    with open_binary(path) as file_:
        for position, line in enumerate(file_, 1):
            if fmt == "jsonl" and not line.strip():
                continue
            yield position, line


def _parquet_file(path: PathLike):
    pa = require_pyarrow()
    if not Path(path).is_file():
        raise DumpError(path, "no such file")
    try:
        parquet = pa.parquet.ParquetFile(str(path))
    except pa.ArrowException as error:
        raise DumpError(path, f"not a Parquet file ({error})") from None
    if "text" not in parquet.schema_arrow.names:
        raise DumpError(path, f"no 'text' column (columns: {', '.join(parquet.schema_arrow.names)})")
    return parquet


def _iter_parquet(path: PathLike, first_row_group: int = 0, n_row_groups: Optional[int] = None):
    parquet = _parquet_file(path)
    columns = [c for c in ("id", "text") if c in parquet.schema_arrow.names]
    metadata = parquet.metadata
    last = metadata.num_row_groups if n_row_groups is None else first_row_group + n_row_groups
    position = sum(metadata.row_group(g).num_rows for g in range(first_row_group))
    for group in range(first_row_group, last):
        table = parquet.read_row_group(group, columns=columns)
        ids = table.column("id").to_pylist() if "id" in columns else [None] * table.num_rows
        for doc_id, text in zip(ids, table.column("text").to_pylist()):
            position += 1
            yield position, (doc_id, text)


def parse_record(raw: Any, position: int, fmt: str) -> Tuple[str, str]:
    """The (id, text) of a raw record (see `iter_raw`). A record without an
    ID gets its position as ID.

    RAISES (RecordError): If the record is malformed.
    """
    if fmt == "text":
        try:
            return str(position), raw.decode("utf8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise RecordError(position, f"not UTF-8 ({error.reason})") from None
    if fmt == "jsonl":
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise RecordError(position, f"not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise RecordError(position, "expected an object with a 'text' string")
        doc_id, text = record.get("id"), record.get("text")
    else:
        doc_id, text = raw
    if not isinstance(text, str):
        raise RecordError(position, f"expected 'text' to be a string, not {type(text).__name__}")
    if doc_id is None:
        return str(position), text
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise RecordError(position, f"expected 'id' to be a string or an integer, not {type(doc_id).__name__}")
    return str(doc_id), text


def shard_of(position: int, shard_size: int) -> int:
    """The shard holding a position (1-based)."""
    return (position - 1) // shard_size


def shard_name(index: int, output_format: str) -> str:
    return f"part-{index:05d}{SUFFIXES[output_format]}"


@dataclass
class ShardStats:
    """What happened to the records of one shard."""

    shard: int
    read: int = 0
    linked: int = 0
    skipped: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"shard": self.shard, "read": self.read, "linked": self.linked, "skipped": self.skipped}


class ShardWriter:
    """Writes one shard's records to a temporary file; `commit` renames it
    into place (atomically), after writing its statistics."""

    def __init__(self, directory: Path, index: int, output_format: str, schema=None) -> None:
        self.path = directory / shard_name(index, output_format)
        self.temporary = directory / f".{self.path.name}.tmp"
        self.output_format = output_format
        self.schema = schema
        self.stats = ShardStats(index)
        if output_format == "parquet":
            self._file = require_pyarrow().parquet.ParquetWriter(str(self.temporary), schema)
        else:
            self._file = self.temporary.open("wb")

    def write(self, records: List[Dict[str, Any]]) -> None:
        """Append linked records (see `records.doc_record`)."""
        if not records:
            return
        if self.output_format == "parquet":
            self._file.write_table(to_arrow(records, self.schema))
        else:
            self._file.write(b"".join(orjson.dumps(record) + b"\n" for record in records))
        self.stats.linked += len(records)

    def commit(self) -> ShardStats:
        """Close the shard and mark it done: statistics first, then the rename."""
        self._file.close()
        _write_json_atomic(stats_path(self.path), self.stats.to_dict())
        os.replace(self.temporary, self.path)
        return self.stats


def stats_path(shard_path: Path) -> Path:
    return shard_path.with_name(shard_path.name.split(".")[0] + ".stats.json")


def _write_json_atomic(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf8")
    os.replace(temporary, path)


def prepare_output(directory: Path, job: Dict[str, Any]) -> Set[int]:
    """Create (or reopen) an output directory for `job` (its input, formats
    and shard size) and return the shards already finished there.

    RAISES (DumpError): If the directory holds the shards of another job.
    """
    directory.mkdir(parents=True, exist_ok=True)
    job_path = directory / JOB_FILE
    if job_path.exists():
        previous = json.loads(job_path.read_text(encoding="utf8"))
        if previous != job:
            differences = ", ".join(
                f"{k}: {previous.get(k)!r} -> {v!r}" for k, v in job.items() if previous.get(k) != v
            )
            raise DumpError(directory, f"holds the shards of another job ({differences}): use another --output")
    else:
        _write_json_atomic(job_path, job)
    suffix = SUFFIXES[job["output_format"]]
    return {int(p.name[5:10]) for p in directory.glob(f"part-*{suffix}")}


def read_stats(directory: Path) -> List[Dict[str, Any]]:
    """The statistics of every finished shard in an output directory, in order."""
    return [json.loads(p.read_text(encoding="utf8")) for p in sorted(directory.glob("part-*.stats.json"))]


def write_summary(directory: Path, summary: Dict[str, Any]) -> None:
    _write_json_atomic(directory / SUMMARY_FILE, summary)


def read_output(directory: PathLike) -> Iterator[Dict[str, Any]]:
    """The records of a finished (or partly finished) output directory, in input order.

    directory (str / Path): The `--output` directory of `link`.
    YIELDS (Dict[str, Any]): The records (see `records.doc_record`).
    """
    directory = Path(directory)
    for path in sorted(directory.glob("part-*.jsonl")):
        with path.open("rb") as file_:
            for line in file_:
                yield orjson.loads(line)
    for path in sorted(directory.glob("part-*.parquet")):
        yield from from_arrow(require_pyarrow().parquet.read_table(str(path)))


def shard_offsets(path: PathLike, fmt: str, shard_size: int) -> List[int]:
    """Where each shard of an input file starts, so that workers can read
    their shard without reading what comes before it: the byte offset of its
    first line (JSONL, text; uncompressed files only), or its first row's
    index (Parquet). One pass over the file's lines, none over Parquet's.

    RAISES (DumpError): If the file does not exist or is compressed.
    """
    if fmt == "parquet":
        n_rows = _parquet_file(path).metadata.num_rows
        return list(range(0, n_rows, shard_size))
    with open_binary(path, parallel=False) as probe:
        if not isinstance(probe, io.BufferedReader):  # bz2.open and gzip.open give other readers
            raise DumpError(path, "workers seek to their shards: decompress the file first (or use --engine local)")
    offsets: List[int] = []
    offset = 0
    with open(path, "rb") as file_:
        for position, line in enumerate(file_):
            if position % shard_size == 0:
                offsets.append(offset)
            offset += len(line)
    return offsets


def read_shard(path: PathLike, fmt: str, shard: int, shard_size: int, offset: int) -> Iterator[Tuple[int, Any]]:
    """The raw records of one shard (see `iter_raw`), read from the offset
    that `shard_offsets` found for it."""
    first = shard * shard_size + 1
    if fmt == "parquet":
        parquet = _parquet_file(path)
        metadata = parquet.metadata
        start = 0
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if start + rows >= first and start < first + shard_size - 1:
                for position, raw in _iter_parquet(path, group, 1):
                    if first <= position < first + shard_size:
                        yield position, raw
            start += rows
        return
    with open(path, "rb") as file_:
        file_.seek(offset)
        for position in range(first, first + shard_size):
            line = file_.readline()
            if not line:
                return
            if fmt == "jsonl" and not line.strip():
                continue
            yield position, line


@dataclass
class LinkSettings:
    """How to link: the pipeline, formats, sharding and error policy (see `link_corpus`)."""

    pipeline: Path
    input_path: Path
    output: Path
    input_format: str
    output_format: str
    shard_size: int
    batch_size: int
    on_error: str
    kb: Optional[Path]

    def job(self) -> Dict[str, Any]:
        """What must not change between a run and its resumption."""
        return {
            "pipeline": str(self.pipeline.resolve()),
            "input": str(self.input_path.resolve()),
            "input_format": self.input_format,
            "output_format": self.output_format,
            "shard_size": self.shard_size,
        }


class ShardSet:
    """The unfinished shards of a run: opened in input order as their first
    record is read, committed in input order once all their records are
    read and linked. A shard whose records were all skipped (or blank)
    is committed too, with no records."""

    def __init__(self, settings: LinkSettings, schema, progress: tqdm) -> None:
        self.settings = settings
        self.schema = schema
        self.progress = progress
        self.open: Dict[int, ShardWriter] = {}  # in input order
        self.expected: Dict[int, int] = {}
        self.closed: Set[int] = set()
        self.committed = 0
        self.linked_now = 0

    def start(self, shard: int) -> ShardWriter:
        for previous in self.open:
            self.closed.add(previous)
        writer = ShardWriter(self.settings.output, shard, self.settings.output_format, self.schema)
        self.open[shard] = writer
        self.expected[shard] = 0
        return writer

    def skip(self, shard: int, error: RecordError) -> None:
        """Record a malformed record, or raise it (`on_error` "fail")."""
        where = f"{position_name(self.settings.input_format)} {error.position}"
        if self.settings.on_error == "fail":
            raise DumpError(self.settings.input_path, f"{where}: {error.reason} (--on-error skip to skip it)")
        self.open[shard].stats.skipped.append(
            {position_name(self.settings.input_format): error.position, "reason": error.reason}
        )
        self.progress.write(f"skipped {self.settings.input_path} {where}: {error.reason}", file=sys.stderr)

    def add(self, shard: int, records) -> None:
        """Write linked records of `shard`, then commit every leading shard that is complete."""
        self.open[shard].write(records)
        self.linked_now += len(records)
        self.progress.update(len(records))
        self.flush()

    def flush(self, final: bool = False) -> None:
        while self.open:
            shard, writer = next(iter(self.open.items()))
            if not (final or shard in self.closed) or writer.stats.linked < self.expected[shard]:
                return
            writer.commit()
            del self.open[shard]
            self.committed += 1
