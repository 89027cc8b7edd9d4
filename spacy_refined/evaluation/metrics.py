"""Entity-linking metrics over gold and predicted mentions (character spans).

Matching is strong: a predicted link is correct when a gold mention has the
same span and the same entity ID. Gold entity IDs are normalised by
`entity_status`: NIL (`<NIL>`, "NIL"), unknown (null, "", `<NO_MAPPING>`:
the mention is linked but its ID is not known) or an entity ID.

* EL (InKB, as GERBIL's A2KB): the gold links are the gold mentions with an
  entity ID (NIL excluded); the predicted links are the predicted mentions
  with an entity ID. Mentions with an unknown gold ID are left out, and so
  are predicted links on their span. Two variants: "nil_fp" counts a link
  predicted on a gold NIL span as a false positive, "nil_ignored" ignores it.
  Micro scores sum the counts over documents; macro scores average the
  per-document P/R/F1 (GERBIL: a document with no true positive scores 1 if
  it has no error at all, else 0).
* ED: accuracy on the gold links whose entity is in the KB ("in_kb": all of
  them; "detected": those whose span was predicted, the same when the gold
  spans are given; "in_kb_forced": in-KB, with the best candidate where the
  linker chose NIL, the usual in-KB disambiguation setting where NIL is not an
  answer), and the recall@k of the candidate generator (on the same gold
  links: is the entity among the top k candidates of the text). Given the
  entities of the training data, the same accuracies for gold entities seen
  and not seen in training ("by_training"): how far the linker generalises
  beyond the entities it was trained on.
* MD: predicted vs gold spans, any ID (NIL and unknown included).

Precision, recall and F1 are spaCy's (`spacy.scorer.PRFScore`), as in the
scores of `spacy train` (`pipeline/scoring.py`), which are computed by this
module too.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.scorer import PRFScore
from spacy.tokens import Span

from ..ids import ENTITY_LABEL, NIL, UNKNOWN, entity_status

RECALL_AT = (1, 5, 10, 30)

Offsets = Tuple[int, int]  # a mention's start and end characters


@dataclass
class Mention:
    """A mention: character span, entity ID (NIL, "" or an ID), coarse type
    and, for predictions, the best candidate (an ID even where NIL won)."""

    start: int
    end: int
    entity_id: str
    type: str = ENTITY_LABEL
    best: Optional[str] = None

    @property
    def span(self) -> Offsets:
        return (self.start, self.end)


def span_mentions(spans: Iterable[Span]) -> List[Mention]:
    """The mentions of spaCy spans (e.g. `doc.ents`): character offsets, the
    status of `kb_id_` (see `entity_status`), the label and, where the span
    has `span._.kb_candidates` (`refined_linker`), its best candidate.

    spans (Iterable[Span]): The spans, gold or predicted.
    RETURNS (List[Mention]): One mention per span.
    """
    has_candidates = Span.has_extension("kb_candidates")
    mentions = []
    for span in spans:
        candidates = span._.kb_candidates if has_candidates else None
        mentions.append(
            Mention(
                span.start_char,
                span.end_char,
                entity_status(span.kb_id_),
                span.label_,
                candidates[0][0] if candidates else None,
            )
        )
    return mentions


def predicted_mentions(spans: Iterable[Span]) -> List[Mention]:
    """The mentions of predicted spans that a linker linked: a span without
    an ID (empty `kb_id_`, e.g. of a label the linker skips) is no prediction.

    spans (Iterable[Span]): The predicted spans (e.g. `doc.ents`).
    RETURNS (List[Mention]): The mentions of the linked spans.
    """
    return [m for m in span_mentions(spans) if m.entity_id != UNKNOWN]


@dataclass
class DocumentResult:
    """A document's gold and predicted mentions, and what is known about the gold entities."""

    id: str
    gold: List[Mention]
    predicted: List[Mention]
    n_tokens: int = 0
    in_kb: Optional[List[bool]] = None  # per gold mention: is its entity in the KB (None: no KB)
    candidate_ranks: Optional[List[int]] = (
        None  # per gold mention: rank of its entity among the candidates, -1 if absent
    )


def gerbil_prf(counts: PRFScore) -> Dict[str, float]:
    """P/R/F1 of one document, with GERBIL's rule for documents without true
    positives (1 if there is no error at all, else 0).

    counts (PRFScore): The document's counts.
    RETURNS (Dict[str, float]): "p", "r" and "f".
    """
    if counts.tp == 0:
        perfect = float(counts.fp == 0 and counts.fn == 0)
        return {"p": perfect, "r": perfect, "f": perfect}
    return counts.to_dict()


def counts_dict(counts: PRFScore) -> Dict[str, Any]:
    """Counts with their precision, recall and F1.

    counts (PRFScore): The counts.
    RETURNS (Dict[str, Any]): "tp", "fp", "fn", "p", "r" and "f".
    """
    return {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, **counts.to_dict()}


@dataclass
class _Aggregate:
    micro: PRFScore = field(default_factory=PRFScore)
    macro: List[Dict[str, float]] = field(default_factory=list)

    def add(self, counts: PRFScore) -> None:
        self.micro += counts
        self.macro.append(gerbil_prf(counts))

    def as_dict(self) -> Dict[str, Any]:
        n = len(self.macro)
        macro = {key: sum(d[key] for d in self.macro) / n if n else 0.0 for key in ("p", "r", "f")}
        return {"micro": counts_dict(self.micro), "macro": macro}


def el_counts(gold: Sequence[Mention], predicted: Sequence[Mention]) -> Dict[str, PRFScore]:
    """Strong-matching InKB link counts of one document, in both NIL variants.

    gold (Sequence[Mention]): The gold mentions.
    predicted (Sequence[Mention]): The predicted mentions.
    RETURNS (Dict[str, PRFScore]): The counts by variant, "nil_fp" and "nil_ignored".
    """
    links = {m.span: m.entity_id for m in gold if m.entity_id not in (NIL, UNKNOWN)}
    nil_spans = {m.span for m in gold if m.entity_id == NIL}
    unknown_spans = {m.span for m in gold if m.entity_id == UNKNOWN}
    predicted_links = {
        m.span: m.entity_id for m in predicted if m.entity_id not in (NIL, UNKNOWN) and m.span not in unknown_spans
    }
    tp = sum(links.get(span) == entity_id for span, entity_id in predicted_links.items())
    on_nil = sum(span in nil_spans for span in predicted_links)
    fn = len(links) - tp
    return {
        "nil_fp": PRFScore(tp=tp, fp=len(predicted_links) - tp, fn=fn),
        "nil_ignored": PRFScore(tp=tp, fp=len(predicted_links) - tp - on_nil, fn=fn),
    }


def md_counts(gold: Sequence[Mention], predicted: Sequence[Mention]) -> PRFScore:
    """Mention detection counts: same span, any ID.

    gold (Sequence[Mention]): The gold mentions.
    predicted (Sequence[Mention]): The predicted mentions.
    RETURNS (PRFScore): The counts.
    """
    counts = PRFScore()
    counts.score_set({m.span for m in predicted}, {m.span for m in gold})
    return counts


def _type_counts(gold: Sequence[Mention], predicted: Sequence[Mention], per_type: Dict[str, PRFScore]) -> None:
    """EL counts (NIL predictions false positives) by type: the gold mention's
    type for true positives, false negatives and links on gold spans, the
    predicted type for links elsewhere."""
    gold_by_span = {m.span: m for m in gold}
    predicted_ids = {p.span: p.entity_id for p in predicted}
    for m in gold:
        if m.entity_id in (NIL, UNKNOWN):
            continue
        counts = per_type.setdefault(m.type, PRFScore())
        hit = predicted_ids.get(m.span) == m.entity_id
        counts.tp += hit
        counts.fn += not hit
    for p in predicted:
        if p.entity_id in (NIL, UNKNOWN):
            continue
        g = gold_by_span.get(p.span)
        if g is not None and g.entity_id == UNKNOWN:
            continue
        if g is None or g.entity_id != p.entity_id:
            per_type.setdefault(g.type if g is not None else p.type, PRFScore()).fp += 1


def score(
    documents: Iterable[DocumentResult],
    recall_at: Sequence[int] = RECALL_AT,
    training_entities: Optional[Set[str]] = None,
) -> Dict[str, Any]:
    """All metrics (see the module docstring), with per-document and per-type breakdowns.

    documents (Iterable[DocumentResult]): The documents' gold and predicted mentions.
    recall_at (Sequence[int]): The k of the candidates' recall@k.
    training_entities (Optional[Set[str]]): The entity IDs of the training
        data, for ED accuracy on seen and unseen entities.
    RETURNS (Dict[str, Any]): "gold", "el", "ed", "md", "per_type" and "per_document".
    """
    el = {"nil_fp": _Aggregate(), "nil_ignored": _Aggregate()}
    md = _Aggregate()
    per_type: Dict[str, PRFScore] = {}
    per_type_ed: Dict[str, PRFScore] = {}
    gold_counts = {"mentions": 0, "linked": 0, "nil": 0, "unknown_id": 0, "in_kb": 0, "not_in_kb": 0}
    ed = {"in_kb": 0, "detected": 0, "correct": 0, "forced": 0, "linked": 0, "correct_linked": 0}
    by_training = {group: {"in_kb": 0, "correct": 0, "forced": 0} for group in ("seen", "unseen")}
    have_kb = have_ranks = False
    recall_hits = {k: 0 for k in recall_at}
    ranked = 0
    per_document = []
    for doc in documents:
        counts = el_counts(doc.gold, doc.predicted)
        for variant, aggregate in el.items():
            aggregate.add(counts[variant])
        mentions = md_counts(doc.gold, doc.predicted)
        md.add(mentions)
        _type_counts(doc.gold, doc.predicted, per_type)
        predicted_ids = {m.span: m.entity_id for m in doc.predicted}
        best_ids = {m.span: m.best or m.entity_id for m in doc.predicted}
        predicted_spans = set(predicted_ids)
        gold_counts["mentions"] += len(doc.gold)
        for i, m in enumerate(doc.gold):
            if m.entity_id == NIL:
                gold_counts["nil"] += 1
                continue
            if m.entity_id == UNKNOWN:
                gold_counts["unknown_id"] += 1
                continue
            gold_counts["linked"] += 1
            correct = predicted_ids.get(m.span) == m.entity_id
            ed["linked"] += 1
            ed["correct_linked"] += correct
            in_kb = True if doc.in_kb is None else doc.in_kb[i]
            have_kb |= doc.in_kb is not None
            gold_counts["in_kb" if in_kb else "not_in_kb"] += 1
            if in_kb:
                ed["in_kb"] += 1
                ed["detected"] += m.span in predicted_spans
                ed["correct"] += correct
                forced = best_ids.get(m.span) == m.entity_id
                ed["forced"] += forced
                if training_entities is not None:
                    group = by_training["seen" if m.entity_id in training_entities else "unseen"]
                    group["in_kb"] += 1
                    group["correct"] += correct
                    group["forced"] += forced
                type_counts = per_type_ed.setdefault(m.type, PRFScore())
                type_counts.tp += correct
                type_counts.fn += not correct
                if doc.candidate_ranks is not None:
                    have_ranks = True
                    ranked += 1
                    rank = doc.candidate_ranks[i]
                    for k in recall_at:
                        recall_hits[k] += 0 <= rank < k
        per_document.append(
            {
                "id": doc.id,
                "tokens": doc.n_tokens,
                "el": counts_dict(counts["nil_fp"]),
                "el_nil_ignored": counts_dict(counts["nil_ignored"]),
                "md": counts_dict(mentions),
            }
        )
    if not have_kb:
        gold_counts["in_kb"] = gold_counts["not_in_kb"] = None
    return {
        "gold": gold_counts,
        "el": {variant: aggregate.as_dict() for variant, aggregate in el.items()},
        "ed": {
            "accuracy_in_kb": ed["correct"] / ed["in_kb"] if ed["in_kb"] else 0.0,
            "accuracy_detected": ed["correct"] / ed["detected"] if ed["detected"] else 0.0,
            "accuracy_in_kb_forced": ed["forced"] / ed["in_kb"] if ed["in_kb"] else 0.0,
            "accuracy_all_linked": ed["correct_linked"] / ed["linked"] if ed["linked"] else 0.0,
            "correct": ed["correct"],
            "in_kb": ed["in_kb"],
            "detected": ed["detected"],
            "recall_at_k": {str(k): hits / ranked for k, hits in recall_hits.items()}
            if have_ranks and ranked
            else None,
            "by_training": None
            if training_entities is None
            else {
                group: {
                    "in_kb": c["in_kb"],
                    "accuracy_in_kb": c["correct"] / c["in_kb"] if c["in_kb"] else 0.0,
                    "accuracy_in_kb_forced": c["forced"] / c["in_kb"] if c["in_kb"] else 0.0,
                }
                for group, c in by_training.items()
            },
        },
        "md": md.as_dict(),
        "per_type": {
            label: {"el": counts_dict(counts), "ed_accuracy": _accuracy(per_type_ed.get(label))}
            for label, counts in sorted(per_type.items())
        },
        "per_document": per_document,
    }


def _accuracy(counts: Optional[PRFScore]) -> Optional[float]:
    """The share of right answers (right: true positive, wrong: false negative)."""
    if counts is None or counts.tp + counts.fn == 0:
        return None
    return counts.recall
