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
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..ids import NIL, UNKNOWN, entity_status

RECALL_AT = (1, 5, 10, 30)

Span = Tuple[int, int]


@dataclass
class Mention:
    """A mention: character span, entity ID (NIL, "" or an ID), coarse type
    and, for predictions, the best candidate (an ID even where NIL won)."""

    start: int
    end: int
    entity_id: str
    type: str = "ENT"
    best: Optional[str] = None

    @property
    def span(self) -> Span:
        return (self.start, self.end)


@dataclass
class DocumentResult:
    """A document's gold and predicted mentions, and what is known about the gold entities."""

    id: str
    gold: List[Mention]
    predicted: List[Mention]
    n_tokens: int = 0
    in_kb: Optional[List[bool]] = None  # per gold mention: is its entity in the KB (None: no KB)
    candidate_ranks: Optional[List[int]] = None  # per gold mention: rank of its entity among the candidates, -1 if absent


@dataclass
class Counts:
    """True positives, false positives and false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: "Counts") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def prf(self) -> Dict[str, float]:
        """Precision, recall and F1 (0 where undefined)."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}

    def gerbil_prf(self) -> Dict[str, float]:
        """P/R/F1 with GERBIL's rule for documents without true positives."""
        if self.tp == 0:
            perfect = float(self.fp == 0 and self.fn == 0)
            return {"p": perfect, "r": perfect, "f": perfect}
        return self.prf()

    def as_dict(self) -> Dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, **self.prf()}


@dataclass
class _Aggregate:
    micro: Counts = field(default_factory=Counts)
    macro: List[Dict[str, float]] = field(default_factory=list)

    def add(self, counts: Counts) -> None:
        self.micro.add(counts)
        self.macro.append(counts.gerbil_prf())

    def as_dict(self) -> Dict[str, Any]:
        n = len(self.macro)
        macro = {key: sum(d[key] for d in self.macro) / n if n else 0.0 for key in ("p", "r", "f")}
        return {"micro": self.micro.as_dict(), "macro": macro}


def el_counts(gold: Sequence[Mention], predicted: Sequence[Mention]) -> Dict[str, Counts]:
    """Strong-matching InKB link counts of one document, in both NIL variants."""
    links = {m.span: m.entity_id for m in gold if m.entity_id not in (NIL, UNKNOWN)}
    nil_spans = {m.span for m in gold if m.entity_id == NIL}
    unknown_spans = {m.span for m in gold if m.entity_id == UNKNOWN}
    predicted_links = {m.span: m.entity_id for m in predicted if m.entity_id not in (NIL, UNKNOWN) and m.span not in unknown_spans}
    tp = sum(links.get(span) == entity_id for span, entity_id in predicted_links.items())
    on_nil = sum(span in nil_spans for span in predicted_links)
    fn = len(links) - tp
    return {
        "nil_fp": Counts(tp, len(predicted_links) - tp, fn),
        "nil_ignored": Counts(tp, len(predicted_links) - tp - on_nil, fn),
    }


def md_counts(gold: Sequence[Mention], predicted: Sequence[Mention]) -> Counts:
    """Mention detection counts: same span, any ID."""
    gold_spans: Set[Span] = {m.span for m in gold}
    predicted_spans: Set[Span] = {m.span for m in predicted}
    tp = len(gold_spans & predicted_spans)
    return Counts(tp, len(predicted_spans) - tp, len(gold_spans) - tp)


def _type_counts(gold: Sequence[Mention], predicted: Sequence[Mention], per_type: Dict[str, Counts]) -> None:
    """EL counts (NIL predictions false positives) by type: the gold mention's
    type for true positives, false negatives and links on gold spans, the
    predicted type for links elsewhere."""
    gold_by_span = {m.span: m for m in gold}
    predicted_ids = {p.span: p.entity_id for p in predicted}
    for m in gold:
        if m.entity_id in (NIL, UNKNOWN):
            continue
        counts = per_type.setdefault(m.type, Counts())
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
            per_type.setdefault(g.type if g is not None else p.type, Counts()).fp += 1


def score(
    documents: Iterable[DocumentResult], recall_at: Sequence[int] = RECALL_AT, training_entities: Optional[Set[str]] = None
) -> Dict[str, Any]:
    """All metrics (see the module docstring) with per-document and per-type
    breakdowns; `training_entities`: the entity IDs of the training data,
    for ED accuracy on seen and unseen entities."""
    el = {"nil_fp": _Aggregate(), "nil_ignored": _Aggregate()}
    md = _Aggregate()
    per_type: Dict[str, Counts] = {}
    per_type_ed: Dict[str, Counts] = {}
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
                type_counts = per_type_ed.setdefault(m.type, Counts())
                type_counts.tp += correct
                type_counts.fn += not correct
                if doc.candidate_ranks is not None:
                    have_ranks = True
                    ranked += 1
                    rank = doc.candidate_ranks[i]
                    for k in recall_at:
                        recall_hits[k] += 0 <= rank < k
        per_document.append({
            "id": doc.id,
            "tokens": doc.n_tokens,
            "el": counts["nil_fp"].as_dict(),
            "el_nil_ignored": counts["nil_ignored"].as_dict(),
            "md": mentions.as_dict(),
        })
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
            "recall_at_k": {str(k): hits / ranked for k, hits in recall_hits.items()} if have_ranks and ranked else None,
            "by_training": None if training_entities is None else {
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
            label: {"el": counts.as_dict(), "ed_accuracy": _accuracy(per_type_ed.get(label))}
            for label, counts in sorted(per_type.items())
        },
        "per_document": per_document,
    }


def _accuracy(counts: Optional[Counts]) -> Optional[float]:
    if counts is None or counts.tp + counts.fn == 0:
        return None
    return counts.tp / (counts.tp + counts.fn)
