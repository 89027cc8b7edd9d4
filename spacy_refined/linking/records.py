"""The output record of a linked document, as a dict (JSONL) and as an Arrow table (Parquet, Ray).

One record per document: its `id` and its `entities` in document order,
each with its character span, text, KB ID (null for entities the linker
does not link, e.g. dates), label, score, top candidates and top types;
`relations` too when the pipeline sets `doc._.relations`. Scores are
rounded to `SCORE_DIGITS` decimals, so that runs that split the work
differently (threads, processes, Ray actors) write the same file.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..util import PathLike

SCORE_DIGITS = 6
RELATIONS = "relations"


def load_pipeline(path: PathLike, kb: Optional[PathLike] = None) -> Language:
    """Load a linking pipeline, its KB optionally opened from another path.

    path (str / Path): The pipeline directory.
    kb (Optional[str / Path]): Open the KB of every `refined_kb` component
        from here (its `external_kb_path`): a path every worker can read.
    RETURNS (Language): The pipeline.
    RAISES (FileNotFoundError): If `path` is not a spaCy pipeline.
    """
    import spacy

    path = Path(path)
    if not (path / "config.cfg").exists():
        raise FileNotFoundError(f"{path} is not a spaCy pipeline (no config.cfg)")
    overrides: Dict[str, Any] = {}
    if kb is not None:
        components = spacy.util.load_config(path / "config.cfg")["components"]
        for name, settings in components.items():
            if settings.get("factory") == "refined_kb":
                overrides[f"components.{name}.external_kb_path"] = str(Path(kb).resolve())
    return spacy.load(path, config=overrides)


def has_relations() -> bool:
    """Whether a component registered `doc._.relations` (written when set)."""
    return Doc.has_extension(RELATIONS)


def _extension(span: Span, name: str) -> Any:
    return span._.get(name) if Span.has_extension(name) else None


def _scored(pairs: Optional[List[Tuple[str, float]]]) -> List[Dict[str, Any]]:
    return [{"id": str(key), "score": round(float(score), SCORE_DIGITS)} for key, score in pairs or ()]


def doc_record(doc: Doc, doc_id: str) -> Dict[str, Any]:
    """The output record of a linked document.

    doc (Doc): The document, processed by the pipeline.
    doc_id (str): Its ID.
    RETURNS (Dict[str, Any]): `{"id", "entities": [{"start", "end", "text",
        "kb_id", "label", "score", "candidates": [{"id", "score"}], "types":
        [{"id", "score"}]}]}`, plus `"relations"` when `doc._.relations` exists.
    """
    entities = []
    for ent in doc.ents:
        score = _extension(ent, "kb_score")
        entities.append(
            {
                "start": ent.start_char,
                "end": ent.end_char,
                "text": ent.text,
                "kb_id": ent.kb_id_ or None,
                "label": ent.label_,
                "score": None if score is None else round(float(score), SCORE_DIGITS),
                "candidates": _scored(_extension(ent, "kb_candidates")),
                "types": _scored(_extension(ent, "kb_types")),
            }
        )
    record: Dict[str, Any] = {"id": doc_id, "entities": entities}
    if has_relations():
        record[RELATIONS] = doc._.get(RELATIONS)
    return record


def require_pyarrow():
    """Import pyarrow, which Parquet files and the Ray engine need.

    RETURNS (module): pyarrow.
    RAISES (ImportError): Saying how to install it.
    """
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(
            'Parquet input or output needs pyarrow: pip install "spacy-refined[ray]" (or pip install pyarrow)'
        ) from None
    return pyarrow


def arrow_schema(relations: bool, extra: Tuple[Tuple[str, Any], ...] = ()):
    """The Arrow schema of output records (`relations` as a JSON string).

    relations (bool): Whether records have relations.
    extra (Tuple[Tuple[str, pyarrow.DataType], ...]): More columns, first.
    RETURNS (pyarrow.Schema): The schema.
    """
    pa = require_pyarrow()
    scored = pa.list_(pa.struct([("id", pa.string()), ("score", pa.float64())]))
    entity = pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("text", pa.string()),
            ("kb_id", pa.string()),
            ("label", pa.string()),
            ("score", pa.float64()),
            ("candidates", scored),
            ("types", scored),
        ]
    )
    fields = [*extra, ("id", pa.string()), ("entities", pa.list_(entity))]
    if relations:
        fields.append((RELATIONS, pa.string()))
    return pa.schema(fields)


def to_arrow(records: List[Dict[str, Any]], schema):
    """Records (see `doc_record`) as an Arrow table of `schema`."""
    pa = require_pyarrow()
    if RELATIONS in schema.names:
        records = [{**r, RELATIONS: None if r.get(RELATIONS) is None else json.dumps(r[RELATIONS])} for r in records]
    return pa.Table.from_pylist(records, schema=schema)


def from_arrow(table) -> List[Dict[str, Any]]:
    """The records of an Arrow table written by `to_arrow`."""
    records = table.to_pylist()
    if RELATIONS in table.schema.names:
        for record in records:
            if record[RELATIONS] is not None:
                record[RELATIONS] = json.loads(record[RELATIONS])
    return records
