"""Streaming reader for Wikidata JSON dumps (the `latest-all.json` layout)."""

import gc
import marshal
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
)

from orjson import loads as json_loads

from ..util import STREAM_ERRORS, DumpError, open_binary

INSTANCE_OF = "P31"
SUBCLASS_OF = "P279"
MULTILINGUAL = "mul"
ENTITY_KINDS = ("item", "property")

Batch = List[Tuple[int, bytes]]
# The values of the WikidataRecord fields, in order.
Fields = Tuple[Any, ...]


@dataclass
class WikidataRecord:
    """The parts of one Wikidata entity that the knowledge base uses."""

    id: str
    kind: str
    label: Optional[str] = None
    description: Optional[str] = None
    aliases: List[str] = field(default_factory=list)
    instance_of: List[str] = field(default_factory=list)
    subclass_of: List[str] = field(default_factory=list)
    sitelink_title: Optional[str] = None
    sitelink_count: int = 0
    facts: List[Tuple[str, str]] = field(default_factory=list)


def iter_dump_lines(path: Union[str, Path]) -> Iterator[Tuple[int, bytes]]:
    """Stream the entity lines of a Wikidata JSON dump.

    path (str / Path): The dump, plain or compressed.
    YIELDS (Tuple[int, bytes]): The 1-based line number and the entity JSON,
        with the trailing comma stripped.
    RAISES (DumpError): If the array is not opened with '[' or not closed
        with ']', or the compressed stream is truncated or corrupt.
    """
    line_no = 0
    offset = 0
    opened = closed = False
    # Each entity is held back until the next line is read, so a file cut off
    # inside its last line reports the truncation rather than bad JSON.
    held: Optional[Tuple[int, bytes]] = None
    with open_binary(path) as file_:
        try:
            for line_no, line in enumerate(file_, 1):
                offset += len(line)
                line = line.strip()
                if not line:
                    continue
                if closed:
                    reason = "content after the closing ']'"
                    raise DumpError(path, reason, line=line_no)
                if not opened:
                    if line != b"[":
                        reason = "does not start with a '[' line"
                        raise DumpError(path, reason, line=line_no)
                    opened = True
                    continue
                if held is not None:
                    yield held
                    held = None
                if line == b"]":
                    closed = True
                else:
                    held = (line_no, line.rstrip(b","))
        except STREAM_ERRORS as e:
            raise DumpError(
                path,
                f"truncated or corrupt compressed stream ({e})",
                line=line_no + 1,
                offset=offset,
            ) from e
    if not opened:
        raise DumpError(path, "does not start with a '[' line", line=1)
    if not closed:
        raise DumpError(
            path,
            f"ends at line {line_no} without the closing ']' (truncated?)",
            line=line_no,
            offset=offset,
        )


def parse_record(line: bytes, language: str = "en", site: str = "enwiki") -> WikidataRecord:
    """Parse one entity line of a Wikidata JSON dump.

    line (bytes): The entity JSON object.
    language (str): The language of the label, description and aliases. Terms
        in "mul" (multilingual) are used where the language has none.
    site (str): The wiki whose sitelink title is kept.
    RETURNS (WikidataRecord): The record. Its kind is the entity type, which
        can also be e.g. "lexeme".
    RAISES (ValueError): If the line is not valid JSON or not an entity.
    """
    return WikidataRecord(*_parse_fields(line, language, site))


def read_wikidata(
    path: Union[str, Path],
    language: str = "en",
    site: str = "enwiki",
    processes: int = 1,
    batch_size: int = 2000,
) -> Iterator[WikidataRecord]:
    """Stream the items and properties of a Wikidata JSON dump, in dump order.
    Other entity types are skipped.

    path (str / Path): The dump, plain, .bz2 or .gz.
    language (str): The language of labels, descriptions and aliases.
    site (str): The wiki whose sitelink titles are kept.
    processes (int): Number of worker processes that parse the JSON.
    batch_size (int): Number of lines sent to a worker at once.
    YIELDS (WikidataRecord): The records.
    RAISES (DumpError): If the file is truncated or a line can't be parsed.
    """
    lines = iter_dump_lines(path)
    if processes <= 1:
        for line_no, line in lines:
            try:
                fields = _parse_fields(line, language, site)
            except ValueError as e:
                raise _json_error(path, line_no, str(e)) from e
            if fields[1] in ENTITY_KINDS:
                yield WikidataRecord(*fields)
        return
    # Pool.imap would read ahead through the whole dump, so the number of
    # batches in flight is bounded here instead. The workers freeze the heap
    # they inherit, so that garbage collections don't scan (and copy) it.
    max_pending = processes * 4
    with Pool(processes, initializer=gc.freeze) as pool:
        pending: deque = deque()
        for batch in _batched(lines, batch_size):
            pending.append(pool.apply_async(_parse_batch, (batch, language, site)))
            if len(pending) >= max_pending:
                yield from _unpack_batch(path, *pending.popleft().get())
        while pending:
            yield from _unpack_batch(path, *pending.popleft().get())


def _parse_fields(line: bytes, language: str, site: str) -> Fields:
    """Parse an entity line into the values of the WikidataRecord fields."""
    data = json_loads(line)
    try:
        entity_id = _string(data["id"], "'id'")
        if not entity_id:
            raise ValueError("the entity 'id' is empty")
        label = _term(data.get("labels"), language)
        aliases_by_lang = data.get("aliases") or {}
        aliases = [
            _string(alias["value"], "an alias")
            for lang in (language, MULTILINGUAL)
            for alias in aliases_by_lang.get(lang, ())
        ]
        instance_of: List[str] = []
        subclass_of: List[str] = []
        facts: List[Tuple[str, str]] = []
        for prop, statements in (data.get("claims") or {}).items():
            for statement in statements:
                if statement.get("rank") == "deprecated":
                    continue
                snak = statement["mainsnak"]
                if snak["snaktype"] != "value" or snak.get("datatype") != "wikibase-item":
                    continue
                value = _string(snak["datavalue"]["value"]["id"], f"a {prop} value")
                if prop == INSTANCE_OF:
                    instance_of.append(value)
                elif prop == SUBCLASS_OF:
                    subclass_of.append(value)
                else:
                    facts.append((prop, value))
        sitelinks = data.get("sitelinks") or {}
        sitelink = sitelinks.get(site)
        return (
            entity_id,
            _string(data["type"], "'type'"),
            label,
            _term(data.get("descriptions"), language),
            [alias for alias in dict.fromkeys(aliases) if alias != label],
            list(dict.fromkeys(instance_of)),
            list(dict.fromkeys(subclass_of)),
            _string(sitelink["title"], "the sitelink title") if sitelink else None,
            len(sitelinks),
            list(dict.fromkeys(facts)),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed entity: {e!r}") from e


def _term(terms: Optional[Dict[str, Any]], language: str) -> Optional[str]:
    # Empty term maps may be serialized as [] rather than {}.
    if not terms:
        return None
    term = terms.get(language) or terms.get(MULTILINGUAL)
    return _string(term["value"], "a label or description") if term else None


def _string(value: Any, what: str) -> str:
    """`value`, which must be a string (ValueError naming `what` otherwise)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string: {value!r}")
    return value


def _batched(lines: Iterable[Tuple[int, bytes]], size: int) -> Iterator[Batch]:
    batch: Batch = []
    for item in lines:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_batch(batch: Batch, language: str, site: str) -> Tuple[List[bytes], Optional[Tuple[int, str]]]:
    """Parse a batch of lines in a worker, stopping at the first bad line.
    Returns the items and properties as marshalled field tuples, which are
    cheaper to send and to hold than records (no garbage collector work), and
    the line number and message of the error.
    """
    records = []
    for line_no, line in batch:
        try:
            fields = _parse_fields(line, language, site)
        except ValueError as e:
            return records, (line_no, str(e))
        if fields[1] in ENTITY_KINDS:
            records.append(marshal.dumps(fields))
    return records, None


def _unpack_batch(
    path: Union[str, Path], records: List[bytes], error: Optional[Tuple[int, str]]
) -> Iterator[WikidataRecord]:
    for record in records:
        yield WikidataRecord(*marshal.loads(record))
    if error is not None:
        raise _json_error(path, *error)


def _json_error(path: Union[str, Path], line_no: int, message: str) -> DumpError:
    return DumpError(path, f"invalid entity JSON: {message}", line=line_no)
