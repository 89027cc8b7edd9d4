"""Entity linking JSONL -> Docs with gold `doc.ents` (for `spacy train`).

A record: `{"id": ..., "text": str, "labels": [{"span": [start, end],
"entity_id": "Q…" | "<NIL>" | null, "label": optional str}, ...]}` (the
format of /work/shared/data/el and ELEVANT benchmarks). Every mention is
kept as an entity: `kb_id_` is the entity ID, "NIL" for NIL mentions (they
still teach mention detection) and "" when the ID is unknown (`null`: kept
for mention detection, left out of the disambiguation loss and of the
scores). Mentions whose entity is not in the KB keep their ID; the linker
leaves them out of the disambiguation loss.
"""
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

import numpy as np
from spacy.language import Language
from spacy.tokenizer import Tokenizer
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..kb.builder import read_jsonl
from ..kb.store import RefinedKB
from ..ids import ENTITY_LABEL, NIL
from ..labels import DEFAULT_TYPE_LABELS, CoarseLabels
from ..pipeline.linker import RefinedLinker

NIL_IDS = ("<NIL>", NIL)


def docs_from_jsonl(
    nlp_or_vocab: Union[Language, Vocab],
    path_or_records: Union[str, Path, Iterable[Dict[str, Any]]],
    kb: Optional[RefinedKB] = None,
) -> Iterator[Doc]:
    """Docs with gold `doc.ents` from EL records (a JSONL path or dicts).

    Texts are tokenized by the pipeline's tokenizer (on whitespace for a
    bare `Vocab`); spans not on token boundaries are expanded to them, and
    a span overlapping an earlier one (by start, then record order) is
    dropped. The label is the record's
    `label` if given; else, with a `kb`, the entity's coarse type (the
    pipeline's `refined_linker` mapping, or the default one; "MISC" when the
    entity is not in the KB); else "ENT". `doc.user_data["id"]` is the
    record's ID.
    """
    if isinstance(nlp_or_vocab, Language):
        make_doc = nlp_or_vocab.make_doc
        linkers = [proc for _, proc in nlp_or_vocab.pipeline if isinstance(proc, RefinedLinker)]
        mapping, default = (linkers[0].type_labels, linkers[0].default_label) if linkers else (DEFAULT_TYPE_LABELS, "MISC")
    else:
        make_doc = Tokenizer(nlp_or_vocab)
        mapping, default = DEFAULT_TYPE_LABELS, "MISC"
    coarse = CoarseLabels(kb.type_ids, mapping, default) if kb is not None else None
    records = (record for _, record in read_jsonl(path_or_records)) if isinstance(path_or_records, (str, Path)) else path_or_records
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"EL record {number}: expected an object with a 'text' string")
        yield _record_doc(make_doc(record["text"]), record, kb, coarse)


def _record_doc(doc: Doc, record: Dict[str, Any], kb: Optional[RefinedKB], coarse: Optional[CoarseLabels]) -> Doc:
    spans: List[Span] = []
    kb_ids: List[str] = []
    given_labels: List[Optional[str]] = []
    for label in record.get("labels") or []:
        start, end = label["span"]
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None:
            continue
        entity_id = label.get("entity_id")
        spans.append(span)
        kb_ids.append(NIL if entity_id in NIL_IDS else entity_id or "")
        given_labels.append(label.get("label"))
    labels = _labels(kb_ids, given_labels, kb, coarse)
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, i))
    ents: List[Span] = []
    for i in order:
        if ents and spans[i].start < ents[-1].end:
            continue
        ents.append(Span(doc, spans[i].start, spans[i].end, label=labels[i], kb_id=kb_ids[i]))
    doc.ents = ents
    if "id" in record:
        doc.user_data["id"] = record["id"]
    return doc


def _labels(kb_ids: List[str], given: List[Optional[str]], kb: Optional[RefinedKB], coarse: Optional[CoarseLabels]) -> List[str]:
    labels = [label or ENTITY_LABEL for label in given]
    if kb is None or coarse is None or not kb_ids:
        return labels
    indices = kb.find(kb_ids)
    known = indices >= 0
    types = np.zeros((len(kb_ids), len(kb.type_ids)), dtype="float32")
    types[known] = kb.type_matrix(indices[known])
    derived = coarse.from_types(types)  # entities not in the KB have no types: the default label
    return [label or derived[i] for i, label in enumerate(given)]
