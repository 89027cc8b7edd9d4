"""The on-disk format of a KB, defined once for its reader and its writer.

A KB directory holds `manifest.json` (format, version, segments, build
settings), `types.json`, `relations.json` and one directory per segment: the
base segment written by `kb build`, then the segments appended by
`kb.builder.append_segment`. A segment is a set of `.npy` arrays, listed with
their dtypes in `SEGMENT_ARRAYS`, and string tables (`SEGMENT_STRINGS`).

The manifest lists the segments and the sha256 of every file (`checksums`,
checked by `kb verify`); the KB's own files are those it and the schema
name (`kb_files`), and nothing else in the directory is copied with a KB.

Writes never leave a half-written file where a reader looks: metadata files
are written aside and renamed over (`atomic_file`), new directories are
staged beside their target and renamed into place (`staging_directory`),
and what a killed writer leaves (`.NAME.tmp-PID-...`) is removed by the
next one; a KB renamed aside by a crash mid-placement is put back when it
is next opened (`recover_placement`). Writers of one KB take turns under
its lock (`lock.write_lock`).

The reader (`store.py`, `segment.py`) and the writer (`builder.py`) both
import this module, so the dependency between them runs one way only.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..util import PathLike
from .arrays import StringTable
from .errors import KBError
from .lock import write_lock

FORMAT = "spacy-refined-kb"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TYPES_FILE = "types.json"
RELATIONS_FILE = "relations.json"
EMBEDDINGS_FILE = "embeddings.npy"
BASE_SEGMENT = "base"
DEFAULT_MAX_CANDIDATES = 30


@dataclass(frozen=True)
class ArraySpec:
    """One array file: `<name>.npy`, 1-d, of `dtype`."""

    name: str
    dtype: str
    meaning: str

    @property
    def file(self) -> str:
        return f"{self.name}.npy"


SEGMENT_ARRAYS: Dict[str, ArraySpec] = {
    array.name: array
    for array in (
        ArraySpec("entity_keys", "uint64", "sorted: spaCy string hash of each entity ID"),
        ArraySpec("entity_key_rows", "int32", "local row of each sorted key"),
        ArraySpec("title_keys", "uint64", "sorted: spaCy string hash of each Wikipedia title"),
        ArraySpec("title_key_rows", "int32", "local row of each sorted title key"),
        ArraySpec("entity_alias_offsets", "int64", "CSR into the `entity_aliases` strings"),
        ArraySpec("popularity", "float32", "in [0, 1]"),
        ArraySpec("type_offsets", "int64", "CSR per local entity into `type_values`"),
        ArraySpec("type_values", "int32", "indices into the KB's type inventory"),
        ArraySpec("alias_keys", "uint64", "sorted: spaCy string hash of each normalised alias"),
        ArraySpec("alias_totals", "float32", "total evidence of the alias (all entities)"),
        ArraySpec("candidate_offsets", "int64", "CSR per alias into the candidate arrays"),
        ArraySpec("candidate_entities", "int32", "global entity indices, best first"),
        ArraySpec("candidate_counts", "float32", "evidence per (alias, entity)"),
        ArraySpec("fact_subjects", "int32", "global entity indices, sorted"),
        ArraySpec("fact_relations", "int32", "indices into the KB's relation inventory"),
        ArraySpec("fact_objects", "int32", "global entity indices"),
        ArraySpec("fact_object_order", "int64", "permutation sorting the facts by object"),
        ArraySpec("fact_objects_sorted", "int32", "fact_objects[fact_object_order]"),
    )
}
SEGMENT_STRINGS = ("entity_ids", "labels", "descriptions", "entity_aliases", "entity_titles")
# Every file of a segment but its optional embeddings (`EMBEDDINGS_FILE`, a 2-d float16 array).
SEGMENT_FILES = tuple(array.file for array in SEGMENT_ARRAYS.values()) + tuple(
    name for table in SEGMENT_STRINGS for name in StringTable.files(table)
)
# A segment directory: "base", or a name ending in its number, unique in the KB ("added-0003").
SEGMENT_NAME = re.compile(r"[a-z]+(-[0-9]+)?")
# What a writer leaves while it runs, beside its target: `.NAME.tmp-PID-...` (being written)
# and `.NAME.old-PID` (the replaced version, during the two renames of a placement).
_SCRATCH = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>[0-9]+)(-.*)?")


def missing_segment_files(directory: Path) -> List[str]:
    """The files of the segment schema that `directory` lacks."""
    return [name for name in SEGMENT_FILES if not (directory / name).exists()]


def new_segment_name(path: Path, manifest: Dict[str, Any], kind: str) -> str:
    """A segment name not used in the KB at `path`, nor by a directory there
    (call it under the KB's write lock, so that no other writer takes it too).

    path (Path): The KB directory.
    manifest (Dict[str, Any]): Its manifest, read under the lock.
    kind (str): "added" (by `kb add`) or "compact" (by `kb compact`).
    RETURNS (str): The name, e.g. "added-0003".
    """
    names = [info["name"] for info in manifest["segments"]] + [entry.name for entry in path.iterdir()]
    numbers = [int(name.rsplit("-", 1)[1]) for name in names if SEGMENT_NAME.fullmatch(name) and "-" in name]
    return f"{kind}-{max(numbers, default=0) + 1:04d}"


def kb_files(path: Path, manifest: Dict[str, Any]) -> List[str]:
    """The KB's own files, as paths relative to `path` ("/"-separated), the
    manifest itself excepted: what a copy of the KB holds, and what its
    checksums cover. Anything else in the directory is not part of the KB."""
    names = [TYPES_FILE, RELATIONS_FILE]
    for info in manifest["segments"]:
        names += segment_files(path, info["name"])
    return names


def segment_files(path: Path, segment: str) -> List[str]:
    """The files of the segment `segment` of the KB at `path`, relative to `path` (see `kb_files`)."""
    names = [f"{segment}/{name}" for name in SEGMENT_FILES]
    if (path / segment / EMBEDDINGS_FILE).exists():
        names.append(f"{segment}/{EMBEDDINGS_FILE}")
    return names


def is_kb_file(name: str, manifest: Dict[str, Any]) -> bool:
    """Whether `name` (relative, "/"-separated) is a file a KB with this manifest may hold."""
    if name in (MANIFEST, TYPES_FILE, RELATIONS_FILE):
        return True
    segment, _, file_name = name.partition("/")
    segments = {info["name"] for info in manifest["segments"]}
    return segment in segments and (file_name in SEGMENT_FILES or file_name == EMBEDDINGS_FILE)


def directory_nbytes(path: Path) -> int:
    """Total size of the files under `path`, in bytes."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def type_inventory_hash(type_ids: Sequence[str]) -> str:
    """Fingerprint of a type inventory; a trained model records it to refuse other KBs."""
    return hashlib.sha256("\n".join(type_ids).encode("utf8")).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file_:
        for block in iter(lambda: file_.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(path: Path, names: Iterable[str]) -> Dict[str, str]:
    """sha256 of the files `names` of the KB at `path` (recorded in the manifest by every write)."""
    return {name: file_sha256(path / name) for name in names}


def read_json_file(path: Path) -> Any:
    """Read one of a KB's JSON files.

    path (Path): The file.
    RETURNS (Any): Its content.
    RAISES (KBError): If it is missing or not valid JSON (a truncated file).
    """
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise KBError(f"{path} is missing: the KB is incomplete") from None
    except ValueError as error:
        raise KBError(f"{path}: not valid JSON, the file is damaged or truncated ({error})") from None


def read_manifest(path: PathLike) -> Dict[str, Any]:
    """Read and check a KB manifest. A KB that a crash left renamed aside
    during its replacement (see `staging_directory`) is put back first.

    path (str / Path): The KB directory.
    RETURNS (Dict[str, Any]): The manifest.
    RAISES (KBError): If the manifest is missing, unreadable, or of another
        format or format version.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        recover_placement(path)
    if not manifest_path.exists():
        raise KBError(f"no KB at {path}: {MANIFEST} is missing (build one with `python -m spacy_refined kb build`)")
    manifest = read_json_file(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        format_ = manifest.get("format") if isinstance(manifest, dict) else None
        raise KBError(f"{path} is not a spacy-refined KB (format {format_!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise KBError(
            f"KB at {path} has format version {manifest.get('format_version')}, this spacy-refined reads version {FORMAT_VERSION}: rebuild it"
        )
    segments = manifest.get("segments")
    if (
        not isinstance(segments, list)
        or not segments
        or not all(isinstance(s, dict) and SEGMENT_NAME.fullmatch(str(s.get("name"))) for s in segments)
    ):
        raise KBError(f"{manifest_path}: the list of segments is missing or names a directory outside the KB")
    return manifest


def is_kb(path: Path) -> bool:
    """Whether `path` is a spacy-refined KB directory."""
    try:
        return json.loads((Path(path) / MANIFEST).read_bytes()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def fsync_directory(path: Path) -> None:
    """Make the renames and new entries of a directory durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def scratch_name(target: Path, kind: str) -> str:
    """Name of a scratch entry beside `target`: "tmp" (being written) or "old" (being replaced)."""
    return f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


@contextmanager
def atomic_file(path: PathLike) -> Iterator[BinaryIO]:
    """Write a file atomically: into a temporary file beside it, flushed to
    disk, then renamed over `path`. Readers see the old file or the new one,
    whole; on failure (disk full, interrupt) the old one is left untouched
    and the temporary file removed.

    path (str / Path): The file to (re)write.
    YIELDS (BinaryIO): The temporary file to write to.
    """
    path = Path(path)
    tmp = path.with_name(scratch_name(path, "tmp"))
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file_:
            yield file_
            file_.flush()
            os.fsync(file_.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def write_json(path: PathLike, data: Any) -> None:
    """Write one of a KB's JSON files atomically (see `atomic_file`)."""
    with atomic_file(path) as file_:
        file_.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf8"))


def write_manifest(path: PathLike, manifest: Dict[str, Any]) -> None:
    """Replace the manifest of the KB directory `path` atomically."""
    write_json(Path(path) / MANIFEST, manifest)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def _scratch_entries(directory: Path, name: Optional[str] = None) -> Iterator[Tuple[Path, str, bool]]:
    """The scratch entries in `directory` (of the target `name`, or of any):
    (path, kind, whether the process that made it is gone)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _SCRATCH.fullmatch(entry.name)
        if match and name in (None, match["name"]):
            yield entry, match["kind"], not _alive(int(match["pid"]))


def recover_placement(target: Path) -> None:
    """Put back a directory that a crash left renamed aside between the two
    renames of a placement (`staging_directory`): if `target` is missing and
    the process that renamed it aside is gone, its old version returns."""
    if target.exists():
        return
    for entry, kind, dead in _scratch_entries(target.parent, target.name):
        if kind == "old" and dead:
            with suppress(OSError):  # another process may have recovered it first
                os.replace(entry, target)
                return


def remove_litter(directory: Path, name: Optional[str] = None) -> None:
    """Remove what killed writers left in `directory` (their temporary files
    and staging directories; of the target `name` only, or all). An old
    version renamed aside is kept while its target is missing."""
    for entry, kind, dead in _scratch_entries(directory, name):
        target = directory / _SCRATCH.fullmatch(entry.name)["name"]
        if dead and (kind == "tmp" or target.exists()):
            _remove(entry)


def output_directory(target: PathLike) -> Path:
    """The absolute path of an output directory to be replaced as a whole.

    RAISES (KBError): If it is the current directory or one of its parents
        (replacing it would pull the ground from under the caller).
    """
    target = Path(target).resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise KBError(f"cannot write to {target}: it is the current directory or holds it; give another path")
    return target


def check_output(
    target: PathLike, *, kind: str = "KB", accept: Callable[[Path], bool] = is_kb, overwrite: bool = False
) -> None:
    """Refuse to replace what is not ours: see `staging_directory`, which
    calls it; call it early to fail before a long computation.

    RAISES (KBError): If `target` exists, is neither empty nor of the `kind`
        that `accept` recognises, and `overwrite` is not set; or is the
        current directory.
    """
    target = output_directory(target)
    if target.exists() and not overwrite and not accept(target) and not _empty_directory(target):
        what = "directory" if target.is_dir() else "file"
        raise KBError(
            f"{target} exists and is not a {kind} but a {what} of something else: "
            f"give another path, or --overwrite to replace it"
        )


@contextmanager
def staging_directory(
    target: PathLike, *, kind: str = "KB", accept: Callable[[Path], bool] = is_kb, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a fresh directory beside `target` to write into. On success it
    replaces `target` by two renames (the old version aside, the new one in;
    under the KB's write lock when `target` is a KB, so that no writer is
    cut off); a crash between them is repaired by `recover_placement`. On
    failure or interrupt it is removed and `target` is left untouched.

    target (str / Path): The directory to write.
    kind (str): What is written ("KB", "pipeline"), for the error message.
    accept (Callable[[Path], bool]): Whether an existing `target` is of that
        kind, and may be replaced.
    overwrite (bool): Replace an existing `target` that is not of that kind.
    YIELDS (Path): The staging directory.
    RAISES (KBError): If `target` exists, is neither empty nor of that kind,
        and `overwrite` is not set; or is the current directory.
    """
    target = output_directory(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_placement(target)
    remove_litter(target.parent, target.name)
    check_output(target, kind=kind, accept=accept, overwrite=overwrite)
    staging = target.with_name(scratch_name(target, "tmp"))
    staging.mkdir()
    try:
        yield staging
        _place(staging, target)
    except BaseException:
        _remove(staging)
        raise


def _empty_directory(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _place(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, the old `target` (if any) aside and then away."""
    if not target.exists():
        os.replace(staging, target)
        fsync_directory(target.parent)
        return
    old = target.with_name(scratch_name(target, "old"))
    with write_lock(target) if is_kb(target) else nullcontext():
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
    fsync_directory(target.parent)
    _remove(old)
