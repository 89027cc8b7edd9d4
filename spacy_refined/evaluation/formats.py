"""Evaluation documents: EL JSONL, GERBIL NIF (Turtle) and AIDA-CoNLL TSV.

Every reader yields EL records `{"id", "text", "labels": [{"span": [start,
end], "entity_id", "wikipedia_title"?}]}` with `entity_id` an ID,
"<NIL>" or null (linked, ID unknown).

Entity IRIs (NIF) and AIDA's Wikipedia titles become IDs: a Wikidata IRI
gives its Q-ID; a Wikipedia or DBpedia IRI (or an AIDA title) gives the
title (spaces as underscores), mapped to an ID by `id_map` when one is given
(an unmapped title then has ID null); GERBIL's `notInWiki` IRIs, AIDA's
`--NME--` and phrases without an entity are NIL.
"""

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union
from urllib.parse import unquote

from ..ids import RECORD_NIL
from ..kb.errors import DumpError
from ..util import read_jsonl

FORMATS = ("jsonl", "nif", "aida")
NIF = "http://persistence.uni-leipzig.org/nlp2rdf/ontologies/nif-core#"
ITSRDF = "http://www.w3.org/2005/11/its/rdf#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
WIKIDATA_IRI = re.compile(r"^https?://(?:www\.)?wikidata\.org/(?:entity|wiki)/([QP]\d+)$")
TITLE_IRI = re.compile(r"^https?://(?:[a-z]+\.)?(?:dbpedia\.org/resource|wikipedia\.org/wiki)/(.+)$")
NOT_IN_WIKI = "http://aksw.org/notInWiki/"

_TURTLE_TOKEN = re.compile(
    r'''\s+|\#[^\n]*
    |(?P<iri><[^>]*>)
    |(?P<literal>"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*")(?:@[A-Za-z0-9-]+|\^\^(?:<[^>]*>|[A-Za-z0-9_-]*:[^\s;,]*[^\s;,.]))?
    |(?P<directive>@prefix|@base|PREFIX|BASE)\b
    |(?P<punct>[;,.])
    |(?P<name>[A-Za-z][A-Za-z0-9_-]*:(?:[^\s;,<>"]*[^\s;,.<>"])?|:(?:[^\s;,<>"]*[^\s;,.<>"])?|a(?=\s))''',
    re.X,
)
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class FormatError(DumpError):
    """Input that is not in the expected format (the message names the file and place)."""


def detect_format(path: Union[str, Path]) -> str:
    """The format of a file by its suffix: .ttl/.nif -> nif, .tsv/.conll -> aida, else jsonl."""
    suffixes = Path(path).suffixes
    if any(s in (".ttl", ".nif") for s in suffixes):
        return "nif"
    if any(s in (".tsv", ".conll") for s in suffixes):
        return "aida"
    return "jsonl"


def read_documents(
    path: Union[str, Path], format: str = "auto", id_map: Optional[Dict[str, str]] = None
) -> List[Dict[str, Any]]:
    """EL records from a file in `format` ("auto": by suffix)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    format = detect_format(path) if format == "auto" else format
    if format == "jsonl":
        numbered = list(read_jsonl(path))
        for line, record in numbered:
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise FormatError(path, "expected an object with a 'text' string", line=line)
        return [record for _, record in numbered]
    if format == "nif":
        return read_nif(path.read_text(encoding="utf8"), id_map, source=str(path))
    if format == "aida":
        return list(read_aida(path.read_text(encoding="utf8").splitlines(), id_map, source=str(path)))
    raise FormatError(path, f"unknown format {format!r}: use one of auto, {', '.join(FORMATS)}")


def read_id_map(path: Union[str, Path]) -> Dict[str, str]:
    """Title -> ID pairs from a TSV (`title<TAB>id[<TAB>...]`, a header line allowed)."""
    mapping: Dict[str, str] = {}
    with Path(path).open(encoding="utf8") as file:
        for line in file:
            columns = line.rstrip("\n").split("\t")
            if len(columns) >= 2 and columns[0] != "title":
                mapping.setdefault(columns[0].replace(" ", "_"), columns[1])
    return mapping


def entity_from_iri(iri: Optional[str], id_map: Optional[Dict[str, str]]) -> Tuple[Optional[str], Optional[str]]:
    """(entity_id, wikipedia_title) of an entity IRI (None: a NIL phrase)."""
    if iri is None or iri.startswith(NOT_IN_WIKI):
        return RECORD_NIL, None
    match = WIKIDATA_IRI.match(iri)
    if match:
        return match.group(1), None
    match = TITLE_IRI.match(iri)
    if match:
        return _title_id(unquote(match.group(1)), id_map)
    return iri, None


def _title_id(title: str, id_map: Optional[Dict[str, str]]) -> Tuple[Optional[str], str]:
    title = title.replace(" ", "_")
    return (id_map.get(title) if id_map is not None else title), title


# ------------------------------------------------------------------- NIF


def _unescape(text: str) -> str:
    def replace(match: "re.Match[str]") -> str:
        code = match.group(1)
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(replace, text)


def parse_turtle(text: str, source: str = "<turtle>") -> Dict[str, Dict[str, List[str]]]:
    """Subject -> predicate -> objects of a Turtle document (IRIs expanded,
    literals as their unescaped lexical form). Covers the Turtle that NIF
    corpora use: prefixes, `;` and `,` lists, typed and language-tagged
    literals, long literals, comments; not blank nodes or collections."""
    prefixes: Dict[str, str] = {}
    triples: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    tokens: List[Tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TURTLE_TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise FormatError(source, f"cannot parse Turtle near {text[position : position + 30]!r}", line=line)
        position = match.end()
        kind = match.lastgroup
        if kind is not None:
            tokens.append((kind, match.group(kind)))

    def term(kind: str, value: str) -> str:
        if kind == "iri":
            return value[1:-1]
        if kind == "literal":
            quote = 3 if value.startswith('"""') else 1
            return _unescape(value[quote:-quote])
        if value == "a":
            return RDF_TYPE
        prefix, _, local = value.partition(":")
        if prefix not in prefixes:
            raise FormatError(source, f"undeclared prefix {prefix!r}")
        return prefixes[prefix] + local

    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "directive":
            if value.lower() in ("@prefix", "prefix"):
                name, iri = tokens[i + 1][1], tokens[i + 2][1]
                prefixes[name.rstrip(":")] = iri[1:-1]
                i += 3
            else:
                i += 2
            if i < len(tokens) and tokens[i] == ("punct", "."):
                i += 1
            continue
        subject = term(kind, value)
        i += 1
        while True:
            predicate = term(*tokens[i])
            i += 1
            while True:
                triples[subject][predicate].append(term(*tokens[i]))
                i += 1
                separator = tokens[i][1]
                i += 1
                if separator != ",":
                    break
            if separator == ";" and tokens[i] == ("punct", "."):
                i += 1
                break
            if separator == ".":
                break
    return triples


def read_nif(text: str, id_map: Optional[Dict[str, str]] = None, source: str = "<nif>") -> List[Dict[str, Any]]:
    """EL records from a GERBIL NIF corpus (contexts and their phrases), in order of appearance."""
    try:
        triples = parse_turtle(text, source)
    except IndexError:
        raise FormatError(source, "truncated Turtle") from None
    contexts = [s for s, p in triples.items() if NIF + "isString" in p]
    records = {s: {"id": s.split("#")[0], "text": triples[s][NIF + "isString"][0], "labels": []} for s in contexts}
    for subject, predicates in triples.items():
        context = predicates.get(NIF + "referenceContext")
        if not context or NIF + "beginIndex" not in predicates:
            continue
        if context[0] not in records:
            raise FormatError(source, f"phrase {subject} refers to the unknown context {context[0]}")
        start, end = int(predicates[NIF + "beginIndex"][0]), int(predicates[NIF + "endIndex"][0])
        refs = predicates.get(ITSRDF + "taIdentRef")
        entity_id, title = entity_from_iri(refs[0] if refs else None, id_map)
        label: Dict[str, Any] = {"span": [start, end], "entity_id": entity_id}
        if title is not None:
            label["wikipedia_title"] = title
        records[context[0]]["labels"].append(label)
    for record in records.values():
        record["labels"].sort(key=lambda label: tuple(label["span"]))
    return list(records.values())


# ------------------------------------------------------------------ AIDA


def read_aida(
    lines: Iterator[str], id_map: Optional[Dict[str, str]] = None, source: str = "<aida>"
) -> Iterator[Dict[str, Any]]:
    """EL records from AIDA-CoNLL's `AIDA-YAGO2-dataset.tsv` (token per line;
    `token<TAB>B|I<TAB>mention<TAB>YAGO2 entity|--NME--[<TAB>Wikipedia URL<TAB>...]`).
    Tokens are joined by single spaces, sentences too; a document's ID is
    `aida-<n>` from its `-DOCSTART- (<n>...)` line, and `split` is testa,
    testb or train."""
    record: Optional[Dict[str, Any]] = None
    words: List[str] = []
    length = 0
    open_label: Optional[Dict[str, Any]] = None
    for number, line in enumerate(lines, 1):
        if line.startswith("-DOCSTART-"):
            if record is not None:
                record["text"] = " ".join(words)
                yield record
            header = line[len("-DOCSTART-") :].strip().strip("()")
            digits = re.match(r"\d+", header)
            split = "testa" if "testa" in header else "testb" if "testb" in header else "train"
            record = {"id": f"aida-{digits.group(0)}" if digits else header, "split": split, "text": "", "labels": []}
            words, length, open_label = [], 0, None
            continue
        if not line.strip():
            continue
        if record is None:
            raise FormatError(source, "a token before the first -DOCSTART- line", line=number)
        columns = line.split("\t")
        start = length + (1 if words else 0)
        words.append(columns[0])
        length = start + len(columns[0])
        if len(columns) == 1:
            open_label = None
            continue
        if len(columns) < 4 or columns[1] not in ("B", "I"):
            raise FormatError(source, "expected token, B|I, mention and entity columns", line=number)
        if columns[1] == "I" and open_label is not None:
            open_label["span"][1] = length
            continue
        if columns[3] == "--NME--":
            entity_id, title = RECORD_NIL, None
        else:
            url_title = TITLE_IRI.match(columns[4]) if len(columns) >= 5 else None
            entity_id, title = _title_id(unquote(url_title.group(1)) if url_title else _unescape(columns[3]), id_map)
        open_label = {"span": [start, length], "entity_id": entity_id}
        if title is not None:
            open_label["wikipedia_title"] = title
        record["labels"].append(open_label)
    if record is not None:
        record["text"] = " ".join(words)
        yield record
