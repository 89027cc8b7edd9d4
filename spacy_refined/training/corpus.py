"""Entity linking JSONL -> Docs with gold `doc.ents` (for `spacy train`).

A record: `{"id": ..., "text": str, "labels": [{"span": [start, end],
"entity_id": "Q…" | "<NIL>" | null, "label": optional str}, ...]}` (the
format of the ELEVANT benchmarks, and what `convert-docs` writes). Every
mention is kept as an entity, its ID read as `evaluate` reads it
(`ids.entity_status`): `kb_id_` is the entity ID, `NIL` for NIL mentions
(they still teach mention detection) and "" when the ID is unknown (null,
"" or "<NO_MAPPING>": kept for mention detection, left out of the
disambiguation loss and of the scores). Mentions whose entity is not in the
KB keep their ID; the linker leaves them out of the disambiguation loss.

A record with `"complete": false` (Wikipedia links: editors link some names
only) has labels that are not all its mentions: with a KB, the names the
KB's aliases find outside its labels are marked as missing annotation
(spaCy's `ent_iob` 0), so that training neither teaches the tagger that they
are no mentions nor shows them to the scorer as NIL.
"""

from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from spacy.language import Language
from spacy.tokenizer import Tokenizer
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..ids import ENTITY_LABEL, entity_status
from ..kb.matcher import AliasMatcher
from ..kb.store import RefinedKB
from ..labels import DEFAULT_LABEL, DEFAULT_TYPE_LABELS, CoarseLabels
from ..pipeline.linker import find_linker
from ..util import read_jsonl


def coarse_labels(nlp: Optional[Language], kb: RefinedKB) -> CoarseLabels:
    """The coarse labels that a pipeline gives the entities of `kb`: its
    `refined_linker`'s `type_labels` and `default_label`, or the default
    ones when it has no `refined_linker` (or no pipeline is given).

    nlp (Optional[Language]): The pipeline, if any.
    kb (RefinedKB): The KB whose types label the entities.
    RETURNS (CoarseLabels): The labels.
    """
    if nlp is not None:
        try:
            linker = find_linker(nlp)
        except ValueError:  # no refined_linker
            pass
        else:
            return CoarseLabels(kb.type_ids, linker.type_labels, linker.default_label)
    return CoarseLabels(kb.type_ids, DEFAULT_TYPE_LABELS, DEFAULT_LABEL)


def docs_from_jsonl(
    nlp_or_vocab: Union[Language, Vocab],
    path_or_records: Union[str, Path, Iterable[Dict[str, Any]]],
    kb: Optional[RefinedKB] = None,
) -> Iterator[Doc]:
    """Docs with gold `doc.ents` from EL records (a JSONL path or dicts).

    Texts are tokenized by the pipeline's tokenizer (on whitespace for a
    bare `Vocab`); spans not on token boundaries are expanded to them, and
    a span overlapping an earlier one (by start, then record order) is
    dropped. The label is the record's `label` if given; else, with a `kb`,
    the entity's coarse type (see `coarse_labels`; the default label when
    the entity is not in the KB); else `ids.ENTITY_LABEL`. `doc.user_data["id"]` is the record's ID.
    """
    nlp = nlp_or_vocab if isinstance(nlp_or_vocab, Language) else None
    make_doc = nlp.make_doc if nlp is not None else Tokenizer(nlp_or_vocab)
    coarse = coarse_labels(nlp, kb) if kb is not None else None
    matcher = AliasMatcher() if kb is not None else None
    records = (
        (record for _, record in read_jsonl(path_or_records))
        if isinstance(path_or_records, (str, Path))
        else path_or_records
    )
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"EL record {number}: expected an object with a 'text' string")
        doc = _record_doc(make_doc(record["text"]), record, kb, coarse)
        if record.get("complete", True) is False and matcher is not None:
            _mark_unlabelled_names_missing(doc, kb, matcher)
        yield doc


def _mark_unlabelled_names_missing(doc: Doc, kb: RefinedKB, matcher: AliasMatcher) -> None:
    """Mark the KB alias matches of `doc` that overlap none of its ents as missing annotation."""
    matches = matcher(kb, [doc])
    covered = [False] * (len(doc) + 1)
    for ent in doc.ents:
        covered[ent.start : ent.end] = [True] * len(ent)
    missing = [
        Span(doc, start, end)
        for start, end in zip(matches.start.tolist(), matches.end.tolist())
        if not any(covered[start:end])
    ]
    if missing:
        doc.set_ents(list(doc.ents), missing=missing, default="unmodified")


def _record_doc(doc: Doc, record: Dict[str, Any], kb: Optional[RefinedKB], coarse: Optional[CoarseLabels]) -> Doc:
    spans: List[Span] = []
    kb_ids: List[str] = []
    given_labels: List[Optional[str]] = []
    for label in record.get("labels") or []:
        start, end = label["span"]
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None:
            continue
        spans.append(span)
        kb_ids.append(entity_status(label.get("entity_id")))
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


def _labels(
    kb_ids: List[str], given: List[Optional[str]], kb: Optional[RefinedKB], coarse: Optional[CoarseLabels]
) -> List[str]:
    if kb is None or coarse is None:
        return [label or ENTITY_LABEL for label in given]
    derived = coarse.for_ids(kb, kb_ids)
    return [label or derived[i] for i, label in enumerate(given)]
