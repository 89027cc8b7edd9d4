"""What the ReFinED model takes and gives: mentions, candidates, its input,
its output and the logits (or their gradients) of its heads.

All arrays are numpy (`Mentions`, `Candidates`) or thinc arrays of the
model's ops (the logits); the PyTorch side has its own tensors (`heads.py`).
"""

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc
from thinc.types import Floats2d

from ..util import concatenated_ranges
from .relations import RelationInputs


@dataclass
class Mentions:
    """Token spans in a batch of docs, sorted by (doc, start).

    `label` 0 is an entity mention (linked); `label` i > 0 is the i-th extra
    label of the BIO head (e.g. DATE), detected but not linked.
    """

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray

    @classmethod
    def empty(cls) -> "Mentions":
        return cls(*(np.zeros(0, dtype="int64") for _ in range(4)))

    @classmethod
    def from_rows(cls, rows: Sequence[Tuple[int, int, int, int]]) -> "Mentions":
        """From (doc, start, end, label) rows, sorted."""
        if not rows:
            return cls.empty()
        array = np.array(sorted(rows), dtype="int64")
        return cls(*array.T.copy())

    def __len__(self) -> int:
        return len(self.doc)

    def subset(self, keep: np.ndarray) -> "Mentions":
        return Mentions(self.doc[keep], self.start[keep], self.end[keep], self.label[keep])

    def token_index(self, doc_offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Flat batch indices of the mentions' tokens, and the mention owning each."""
        lengths = self.end - self.start
        owners = np.repeat(np.arange(len(self)), lengths)
        return concatenated_ranges(doc_offsets[self.doc] + self.start, lengths), owners


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


@dataclass
class RefinedInput:
    """The model's input: the `docs`, the `mentions` to link (None: detect
    them with the BIO head) and `lookup(docs, mentions, is_train)`, which
    turns mentions into their `Candidates`. The model calls `lookup` within
    its forward pass, between detecting the mentions and scoring their
    candidates; the component passes its KB lookup."""

    docs: List[Doc]
    mentions: Optional[Mentions]
    lookup: Lookup


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
