"""The linker's KB-fact reasoning (see `model/relations.py`) on the KB side:
which mention pairs the relation head reads, the facts among a batch's
candidates, the distant-supervision targets of the pairs, and the relations
found in the text that the KB confirms, written to `doc._.relations`.

The `relations` setting of `refined_linker` takes `KBRelations.v1`; null
turns the mechanism off (no relation head, no KB score), for an ablation or
a KB without facts.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span
from spacy.util import registry

from ..kb.store import RefinedKB
from ..model.relations import RelationInputs, relation_targets
from ..model.types import Mentions
from ..util import concatenated_ranges, sorted_positions

EXTENSION = "relations"
# Where a doc keeps its relations: plain values, so that docs pickle (`nlp.pipe(n_process=...)`)
# and go into DocBins; `doc._.relations` makes the spans from them.
USER_DATA_KEY = ("spacy_refined", "relations")


class KBRelation(NamedTuple):
    """A relation stated in the text between two linked mentions, which the
    KB confirms: `head` -`relation` (ID; `label`)-> `tail`, with the relation
    head's probability `score`."""

    head: Span
    relation: str
    label: str
    tail: Span
    score: float


@registry.misc("spacy_refined.KBRelations.v1")
def make_kb_relations(window: int = 30, threshold: float = 0.5) -> "KBRelations":
    """KB-fact reasoning for the linker's `relations` setting.

    window (int): the most tokens between two mentions of a document that the
        relation head pairs (0: adjacent mentions only); pairs further apart
        are ignored.
    threshold (float): the relation probability from which a relation that
        the KB confirms goes to `doc._.relations`.
    """
    return KBRelations(window=window, threshold=threshold)


def install_extension() -> None:
    """Register `doc._.relations` (once per process)."""
    if not Doc.has_extension(EXTENSION):
        Doc.set_extension(EXTENSION, getter=get_relations)


def get_relations(doc: Doc) -> Optional[List[KBRelation]]:
    """The relations the linker found in `doc` (None: it did not look for any)."""
    rows = doc.user_data.get(USER_DATA_KEY)
    if rows is None:
        return None
    return [
        KBRelation(Span(doc, hs, he, label=hl, kb_id=hk), relation, label, Span(doc, ts, te, label=tl, kb_id=tk), p)
        for hs, he, hl, hk, relation, label, ts, te, tl, tk, p in rows
    ]


def displacy_relations(doc: Doc) -> Dict[str, Any]:
    """`doc._.relations` as displaCy's manual dependency data: each linked
    mention one word (tagged with its KB ID), the other tokens as they are,
    and an arc labelled with the relation's label from head to tail:

        displacy.render(displacy_relations(doc), style="dep", manual=True)
    """
    relations = doc._.get(EXTENSION) or []
    spans = {(span.start, span.end): span.kb_id_ for span in doc.ents}
    for relation in relations:
        spans.setdefault((relation.head.start, relation.head.end), relation.head.kb_id_)
        spans.setdefault((relation.tail.start, relation.tail.end), relation.tail.kb_id_)
    starts = {start: (end, kb_id) for (start, end), kb_id in sorted(spans.items())}
    words: List[Dict[str, str]] = []
    word_of: Dict[int, int] = {}
    i = 0
    while i < len(doc):
        end, kb_id = starts.get(i, (i + 1, ""))
        word_of[i] = len(words)
        words.append({"text": doc[i:end].text, "tag": kb_id})
        i = max(end, i + 1)
    arcs = []
    for relation in relations:
        head, tail = word_of[relation.head.start], word_of[relation.tail.start]
        arcs.append(
            {
                "start": min(head, tail),
                "end": max(head, tail),
                "label": relation.label,
                "dir": "right" if head < tail else "left",
            }
        )
    return {"words": words, "arcs": arcs}


@dataclass
class KBRelations:
    """The settings of the mechanism and its KB-side steps."""

    window: int
    threshold: float

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ValueError(f"KBRelations: window must be 0 or more tokens, not {self.window}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"KBRelations: threshold must lie in [0, 1], not {self.threshold}")

    def pairs(self, mentions: Mentions) -> np.ndarray:
        """(2, P): the pairs (i < j) of mentions of the same document, not
        overlapping, with at most `window` tokens between them."""
        n = len(mentions)
        if n < 2:
            return np.zeros((2, 0), dtype="int64")
        span = int(max(mentions.end.max(), mentions.start.max())) + self.window + 2
        keys = mentions.doc * span + mentions.start  # sorted: mentions are sorted by (doc, start)
        last = np.searchsorted(keys, mentions.doc * span + mentions.end + self.window, side="right")
        counts = np.maximum(last - np.arange(1, n + 1), 0)
        heads = np.repeat(np.arange(n), counts)
        tails = concatenated_ranges(np.arange(1, n + 1), counts)
        keep = mentions.start[tails] >= mentions.end[heads]
        return np.stack([heads[keep], tails[keep]]).astype("int64")

    def inputs(
        self,
        kb: RefinedKB,
        mentions: Mentions,
        doc_lengths: np.ndarray,
        table: np.ndarray,
        candidate_rows: np.ndarray,
        n_base: int,
        connected_only: bool,
    ) -> RelationInputs:
        """The relation head's input for a batch: the pairs, the token ranges
        between them and the facts among the entity `table` (sorted KB
        indices: the batch's candidates; `candidate_rows` (n_mentions, k):
        each mention's candidates as rows of it, -1: padding).

        connected_only (bool): Keep only the pairs with a fact between a
            candidate of each mention (prediction: the others add nothing to
            the KB score or to `doc._.relations`); training keeps all, the
            others being negatives of the distant supervision.
        """
        pairs = self.pairs(mentions)
        facts = facts_among(kb, table, n_base) if pairs.shape[1] else np.zeros((3, 0), dtype="int64")
        if connected_only:
            pairs = pairs[:, connected(pairs, candidate_rows, facts)]
        offsets = np.cumsum(doc_lengths) - doc_lengths
        head, tail = pairs
        between = np.stack(
            [offsets[mentions.doc[head]] + mentions.end[head], offsets[mentions.doc[tail]] + mentions.start[tail]]
        )
        return RelationInputs(pairs, between.astype("int64").reshape(2, -1), facts)

    @staticmethod
    def targets(kb: RefinedKB, gold: np.ndarray, pairs: np.ndarray, n_base: int) -> Tuple[np.ndarray, np.ndarray]:
        """Distant supervision of the pairs: their targets (P, 2R) from the KB
        facts between the mentions' `gold` entities (KB indices, -1:
        unknown), and which pairs have a target (both gold entities known)."""
        table = np.unique(gold[gold >= 0])
        gold_rows = np.where(gold >= 0, np.searchsorted(table, gold), -1)
        facts = facts_among(kb, table, n_base)
        has_target = (gold_rows[pairs[0]] >= 0) & (gold_rows[pairs[1]] >= 0)
        return relation_targets(gold_rows, pairs, facts, n_base), has_target

    def confirmed(
        self, kb: RefinedKB, winners: np.ndarray, pairs: np.ndarray, probs: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The relations the head gives at least `threshold` and the KB
        confirms between the linked entities `winners` (KB index per
        mention, -1: NIL), in the KB's direction: (subject mention, relation,
        object mention, probability) arrays."""
        n_base = probs.shape[1] // 2
        pair, column = np.nonzero(probs >= self.threshold)
        head, tail = pairs[0][pair], pairs[1][pair]
        forward = column < n_base
        subject, obj = np.where(forward, head, tail), np.where(forward, tail, head)
        relation = column % n_base
        linked = (winners[subject] >= 0) & (winners[obj] >= 0)
        subject, obj, relation, score = subject[linked], obj[linked], relation[linked], probs[pair, column][linked]
        table = np.unique(winners[winners >= 0])
        facts = facts_among(kb, table, n_base)
        n = len(table)
        fact_keys = np.sort((facts[0] * n + facts[2]) * n_base + facts[1])
        subject_rows = np.searchsorted(table, winners[subject])
        object_rows = np.searchsorted(table, winners[obj])
        found = sorted_positions(fact_keys, (subject_rows * n + object_rows) * n_base + relation) >= 0
        return subject[found], relation[found], obj[found], score[found]

    def annotate(
        self,
        docs: Sequence[Doc],
        kb: RefinedKB,
        spans: Sequence[Optional[Span]],
        mentions: Mentions,
        winners: np.ndarray,
        pairs: np.ndarray,
        probs: np.ndarray,
    ) -> None:
        """Write `doc._.relations` of each doc: its confirmed relations, in
        text order of their subjects. `spans`: the linked span of each
        mention of the batch (None: a mention dropped as no mention)."""
        found: List[List[tuple]] = [[] for _ in docs]
        if pairs.shape[1]:
            subject, relation, obj, score = self.confirmed(kb, winners, pairs, probs)
            ids, labels = kb.relation_ids, kb.relation_labels
            for s, r, o, p in zip(subject.tolist(), relation.tolist(), obj.tolist(), score.tolist()):
                head, tail = spans[s], spans[o]
                if head is None or tail is None:
                    continue
                found[int(mentions.doc[s])].append(
                    (head.start, head.end, head.label_, head.kb_id_, ids[r], labels[r])
                    + (tail.start, tail.end, tail.label_, tail.kb_id_, p)
                )
        for doc, rows in zip(docs, found):
            doc.user_data[USER_DATA_KEY] = sorted(rows, key=lambda row: (row[0], row[6], row[4]))


def connected(pairs: np.ndarray, candidate_rows: np.ndarray, facts: np.ndarray) -> np.ndarray:
    """Which `pairs` (2, P) of mentions have a fact (3, F) between a
    candidate of each (`candidate_rows` (n_mentions, k), -1: padding)."""
    n_mentions = len(candidate_rows)
    if not pairs.shape[1] or not facts.shape[1]:
        return np.zeros(pairs.shape[1], dtype=bool)
    mention_of = np.repeat(np.arange(n_mentions), candidate_rows.shape[1])
    rows = candidate_rows.reshape(-1)
    mention_of, rows = mention_of[rows >= 0], rows[rows >= 0]
    order = np.argsort(rows, kind="stable")
    rows, mention_of = rows[order], mention_of[order]
    start = np.searchsorted(rows, facts[0], side="left")
    count = np.searchsorted(rows, facts[0], side="right") - start
    # Each fact, once for every mention with its subject, then for every mention with its object.
    fact = np.repeat(np.arange(facts.shape[1]), count)
    first = mention_of[concatenated_ranges(start, count)]
    objects = facts[2][fact]
    start = np.searchsorted(rows, objects, side="left")
    count = np.searchsorted(rows, objects, side="right") - start
    a = np.repeat(first, count)
    b = mention_of[concatenated_ranges(start, count)]
    linked = np.unique(np.minimum(a, b) * n_mentions + np.maximum(a, b))
    return sorted_positions(linked, pairs[0] * n_mentions + pairs[1]) >= 0


def facts_among(kb: RefinedKB, table: np.ndarray, n_base: int) -> np.ndarray:
    """(3, F): the facts of `kb` between entities of `table` (sorted distinct
    KB indices) as (subject row, relation, object row) of the table, the
    relations below `n_base` (those the model was sized for)."""
    if not len(table):
        return np.zeros((3, 0), dtype="int64")
    subjects, relations, objects = kb.facts_about(table)
    object_rows = sorted_positions(table, objects)
    keep = (object_rows >= 0) & (relations < n_base)
    return np.stack([np.searchsorted(table, subjects[keep]), relations[keep], object_rows[keep]]).astype("int64")
