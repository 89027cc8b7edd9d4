"""The on-disk format of a KB, defined once for its reader and its writer.

A KB directory holds `manifest.json` (format, version, segments, build
settings), `types.json`, `relations.json` and one directory per segment: the
base segment written by `kb build`, then the segments appended by
`kb.builder.append_segment`. A segment is a set of `.npy` arrays, listed with
their dtypes in `SEGMENT_ARRAYS`, and string tables (`SEGMENT_STRINGS`).

The reader (`store.py`, `segment.py`) and the writer (`builder.py`) both
import this module, so the dependency between them runs one way only.
"""

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

from ..util import PathLike
from .arrays import StringTable
from .errors import KBError

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


def added_segment_name(position: int) -> str:
    """Directory name of the segment appended at `position` in the manifest."""
    return f"added-{position:04d}"


def missing_segment_files(directory: Path) -> List[str]:
    """The files of the segment schema that `directory` lacks."""
    names = [array.file for array in SEGMENT_ARRAYS.values()]
    names += [name for table in SEGMENT_STRINGS for name in StringTable.files(table)]
    return [name for name in names if not (directory / name).exists()]


def directory_nbytes(path: Path) -> int:
    """Total size of the files under `path`, in bytes."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def type_inventory_hash(type_ids: Sequence[str]) -> str:
    """Fingerprint of a type inventory; a trained model records it to refuse other KBs."""
    return hashlib.sha256("\n".join(type_ids).encode("utf8")).hexdigest()[:16]


def read_manifest(path: PathLike) -> Dict[str, Any]:
    """Read and check a KB manifest.

    path (str / Path): The KB directory.
    RETURNS (Dict[str, Any]): The manifest.
    RAISES (KBError): If the manifest is missing, unreadable, or of another
        format or format version.
    """
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        raise KBError(f"no KB at {path}: {MANIFEST} is missing (build one with `python -m spacy_refined kb build`)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf8"))
    except ValueError as error:
        raise KBError(f"KB at {path}: {MANIFEST} is not valid JSON ({error})") from None
    if manifest.get("format") != FORMAT:
        raise KBError(f"{path} is not a spacy-refined KB (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise KBError(
            f"KB at {path} has format version {manifest.get('format_version')}, this spacy-refined reads version {FORMAT_VERSION}: rebuild it"
        )
    return manifest


def write_manifest(path: PathLike, manifest: Dict[str, Any]) -> None:
    """Replace the manifest of the KB directory `path` atomically."""
    tmp = Path(path) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf8")
    os.replace(tmp, Path(path) / MANIFEST)


@contextmanager
def staging_directory(target: PathLike) -> Iterator[Path]:
    """Yield a fresh directory beside `target` to write into. On success it
    replaces `target` (by renames); on failure it is removed and `target` is
    left untouched, so a failed write never replaces a good KB.

    target (str / Path): The directory to write.
    YIELDS (Path): The staging directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
