"""What the ReFinED model takes and gives: mentions, candidates, its input,
its output and the logits (or their gradients) of its heads.

All arrays are numpy (`Mentions`, `Candidates`) or thinc arrays of the
model's ops (the logits); the PyTorch side has its own tensors (`heads.py`).
"""

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc
from thinc.types import Floats2d

from ..util import concatenated_ranges
from .relations import RelationInputs


class Origin(IntEnum):
    """Which mention source proposed a mention (`Mentions.origin`): the
    candidate scorer tells the spans that only the KB's aliases proposed
    from the others, which the text itself marks as mentions."""

    TAGGER = 0  # the BIO head (and, in training, the gold mentions)
    ENTS = 1  # `doc.ents`
    SPANS = 2  # a span group
    ALIASES = 3  # a KB alias found in the text


@dataclass
class Mentions:
    """Token spans in a batch of docs, sorted by (doc, start).

    `label` 0 is an entity mention (linked); `label` i > 0 is the i-th extra
    label of the BIO head (e.g. DATE), detected but not linked. `origin`
    (an `Origin` per mention) says which source proposed it.
    """

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    origin: Optional[np.ndarray] = None  # None: all Origin.TAGGER

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = np.full(len(self.doc), int(Origin.TAGGER), dtype="int64")

    @classmethod
    def empty(cls) -> "Mentions":
        return cls(*(np.zeros(0, dtype="int64") for _ in range(5)))

    @classmethod
    def from_rows(cls, rows: Sequence[Tuple[int, int, int, int]], origin: Origin = Origin.TAGGER) -> "Mentions":
        """From (doc, start, end, label) rows, sorted, all proposed by `origin`."""
        if not rows:
            return cls.empty()
        array = np.array(sorted(rows), dtype="int64")
        return cls(*array.T.copy(), origin=np.full(len(array), int(origin), dtype="int64"))

    @classmethod
    def concatenate(cls, parts: Sequence["Mentions"]) -> "Mentions":
        """The mentions of all `parts`, sorted by (doc, start, end)."""
        fields = [np.concatenate([getattr(part, name) for part in parts] + [np.zeros(0, "int64")]) for name in FIELDS]
        order = np.lexsort((fields[2], fields[1], fields[0]))
        return cls(*(values[order].astype("int64") for values in fields))

    def __len__(self) -> int:
        return len(self.doc)

    def subset(self, keep: np.ndarray) -> "Mentions":
        return Mentions(*(getattr(self, name)[keep] for name in FIELDS))

    def overlapping(self, others: "Mentions", doc_offsets: np.ndarray) -> np.ndarray:
        """Whether each mention shares a token with any of `others` (same batch).

        doc_offsets (np.ndarray): the flat batch index of each doc's first
            token, and the batch's token count last (n_docs + 1).
        RETURNS (np.ndarray): bool, one per mention.
        """
        covered = np.zeros(int(doc_offsets[-1]) + 1, dtype="int64")
        np.add.at(covered, doc_offsets[others.doc] + others.start, 1)
        np.add.at(covered, doc_offsets[others.doc] + others.end, -1)
        inside = np.r_[0, np.cumsum(np.cumsum(covered)[:-1] > 0)]
        starts, ends = doc_offsets[self.doc] + self.start, doc_offsets[self.doc] + self.end
        return inside[ends] - inside[starts] > 0

    def token_index(self, doc_offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Flat batch indices of the mentions' tokens, and the mention owning each."""
        lengths = self.end - self.start
        owners = np.repeat(np.arange(len(self)), lengths)
        return concatenated_ranges(doc_offsets[self.doc] + self.start, lengths), owners


FIELDS = ("doc", "start", "end", "label", "origin")


@dataclass
class Candidates:
    """The candidates of a batch of mentions, padded to (n_mentions, k).

    `entities` are KB indices (-1: padding), `priors` their P(e|m),
    `coherence` (n_mentions, k, n_coherence) their fit with the document's
    other mentions (see `pipeline/coherence.py`), `rows` index the batch's entity
    table (`unique`), whose types are `types` (n_unique, T; type indices,
    -1: padding) and popularities `popularity` (n_unique; in [0, 1]). Entity
    descriptions come either as precomputed `vectors` (n_unique, width) or as
    `texts` for the description encoder. `relations`: the mention pairs and
    the facts among the candidates, for the relation head (None: none).
    """

    entities: np.ndarray
    priors: np.ndarray
    coherence: np.ndarray
    unique: np.ndarray
    rows: np.ndarray
    types: np.ndarray
    popularity: np.ndarray
    vectors: Optional[np.ndarray] = None
    texts: Optional[List[str]] = None
    relations: Optional[RelationInputs] = None

    @property
    def mask(self) -> np.ndarray:
        return self.entities >= 0


Lookup = Callable[[List[Doc], Mentions, bool], Candidates]
# (docs, the BIO head's mentions or None when it did not tag) -> the mentions to link
Propose = Callable[[List[Doc], Optional[Mentions]], Mentions]


@dataclass
class RefinedInput:
    """The model's input: the `docs`, the `mentions` to link (given, e.g. the
    gold ones in training) and `lookup(docs, mentions, is_train)`, which turns
    mentions into their `Candidates`. Without given mentions, the BIO head
    tags the docs (if `tag`) and `propose` turns its mentions into the ones to
    link (None: link the head's own). The model calls `lookup` within its
    forward pass, between finding the mentions and scoring their candidates;
    the component passes its KB lookup and its mention source."""

    docs: List[Doc]
    mentions: Optional[Mentions]
    lookup: Lookup
    propose: Optional[Propose] = None
    tag: bool = True


@dataclass
class RefinedOutput:
    """Logits for a batch. `tag_logits` (n_tokens, n_tags) covers the batch's
    tokens in order (None when mentions were given and not training);
    `mentions` are the linked mentions, `extra` the detected mentions of
    extra labels; `relation_logits` (P, 2R) are those of the mention pairs
    `candidates.relations.pairs` (None: no relation head or no pair)."""

    mentions: Mentions
    candidates: Candidates
    tag_logits: Optional[Floats2d]
    type_logits: Floats2d
    link_logits: Floats2d
    description_logits: Floats2d
    extra: Mentions = field(default_factory=Mentions.empty)
    relation_logits: Optional[Floats2d] = None


@dataclass
class Logits:
    """The heads' logits, or the gradients of a loss with respect to them
    (`backprop` of the model takes these; None: no loss). The fields are
    those of the PyTorch heads' output (`heads.HeadsOutput`), matched by name."""

    tag_logits: Optional[Floats2d] = None
    type_logits: Optional[Floats2d] = None
    link_logits: Optional[Floats2d] = None
    description_logits: Optional[Floats2d] = None
    relation_logits: Optional[Floats2d] = None


@dataclass
class HeadsInput:
    """The input of the heads layer: the batch's token vectors `tokens`
    (n_tokens, width) in documents of `lengths` tokens; `tags`: whether to
    compute the tag logits; and, to type and link, the `mentions` (with the
    flat batch indices of their tokens, `mention_tokens`, and the mention
    owning each, `owners`), their `candidates` and the description vectors
    (n_unique, entity_width) of the candidates' entity table."""

    tokens: Floats2d
    lengths: np.ndarray
    tags: bool
    mentions: Optional[Mentions] = None
    mention_tokens: Optional[np.ndarray] = None
    owners: Optional[np.ndarray] = None
    candidates: Optional[Candidates] = None
    vectors: Optional[Floats2d] = None
