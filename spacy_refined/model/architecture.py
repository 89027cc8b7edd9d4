"""The ReFinED model as a thinc `Model`: token vectors from any spaCy tok2vec
or transformer listener, PyTorch heads (see `heads.py`) and a description
encoder (see `description.py`), trained jointly.

The model's input is a `RefinedInput`: the docs, the mentions to link (gold
spans in training, `doc.ents` or given spans; None to detect them with the
BIO head) and a `lookup` callback that turns mentions into candidates (the
component passes its KB lookup). The output is a `RefinedOutput` of logits;
`backprop` takes the gradients of the loss as `Logits`.
"""
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.attrs import IS_SPACE
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d

from ..util import concatenated_ranges
from ._torch import shim_device, torch_shim
from .heads import RefinedHeads

# Imported for their registrations (the description encoder architectures).
from . import description  # noqa: F401

IMPOSSIBLE = -1e9  # log-probability of a tag that cannot be chosen


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
    `coherence` (n_mentions, k, N_COHERENCE) their fit with the document's
    other mentions (see `pipeline/coherence.py`), `rows` index the batch's entity
    table (`unique`), whose types are `types` (n_unique, T; type indices,
    -1: padding) and popularities `popularity` (n_unique; in [0, 1]). Entity
    descriptions come either as precomputed `vectors` (n_unique, width) or as
    `texts` for the description encoder.
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

    @property
    def mask(self) -> np.ndarray:
        return self.entities >= 0


Lookup = Callable[[List[Doc], Mentions, bool], Candidates]


@dataclass
class RefinedInput:
    docs: List[Doc]
    mentions: Optional[Mentions]
    lookup: Lookup


@dataclass
class RefinedOutput:
    """Logits for a batch. `tag_logits` (n_tokens, n_tags) covers the batch's
    tokens in order (None when mentions were given and not training);
    `mentions` are the linked mentions, `extra` the detected mentions of
    extra labels."""

    mentions: Mentions
    candidates: Candidates
    tag_logits: Optional[Floats2d]
    type_logits: Floats2d
    link_logits: Floats2d
    description_logits: Floats2d
    extra: Mentions = field(default_factory=Mentions.empty)


@dataclass
class Logits:
    """The heads' four logits, or the gradients of a loss with respect to
    them (`backprop` of the model takes these; None: no loss)."""

    tag_logits: Optional[Floats2d] = None
    type_logits: Optional[Floats2d] = None
    link_logits: Optional[Floats2d] = None
    description_logits: Optional[Floats2d] = None


@registry.architectures("spacy_refined.RefinedModel.v1")
def build_refined_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    description_encoder: Model[List[str], Floats2d],
    hidden_width: int = 128,
    dropout: float = 0.1,
    context_width: int = 0,
) -> Model[RefinedInput, RefinedOutput]:
    """ReFinED: mention detection, entity typing and disambiguation in one pass.

    tok2vec: token vectors, e.g. `spacy.Tok2Vec.v2`/`spacy.HashEmbedCNN.v2`,
        `spacy.Tok2VecListener.v1` or `spacy-transformers.TransformerListener.v1`
        (long docs are split in windows by the transformer's span getter).
    description_encoder: entity descriptions -> vectors, e.g.
        `spacy_refined.HashDescriptionEncoder.v1` or
        `spacy_refined.TransformerDescriptionEncoder.v1`.
    hidden_width: hidden layer of the BIO tagger.
    dropout: dropout of the heads.
    context_width: units of the BIO tagger's bidirectional LSTM over each
        document (each way; 0: no LSTM, the tagger sees each token's vector
        alone). The LSTM pays for a weak encoder such as a CNN tok2vec.

    The heads are sized at initialization: `n_tags` and `n_types` must be set
    with `set_output_sizes` first (the component does it from the KB).
    """
    heads = Model(
        "refined_heads",
        _heads_forward,
        dims={"nI": None, "n_tags": None, "n_types": None},
        attrs={"hidden_width": hidden_width, "dropout": dropout, "context_width": context_width},
        shims=[torch_shim()],
    )
    return Model(
        "refined",
        _forward,
        init=_init,
        layers=[tok2vec, description_encoder, heads],
        refs={"tok2vec": tok2vec, "description_encoder": description_encoder, "heads": heads},
    )


def set_output_sizes(model: Model, n_tags: int, n_types: int) -> None:
    """Set the sizes of the tagger and the typing head (before `initialize`)."""
    heads = model.get_ref("heads")
    heads.set_dim("n_tags", n_tags, force=True)
    heads.set_dim("n_types", n_types, force=True)


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    tok2vec = model.get_ref("tok2vec")
    encoder = model.get_ref("description_encoder")
    heads = model.get_ref("heads")
    docs = [doc for doc in X or [] if len(doc)]
    tok2vec.initialize(X=docs or None)
    encoder.initialize(X=["Example: an entity description"])
    heads.set_dim("nI", _token_width(tok2vec, docs), force=True)
    module = RefinedHeads(
        width=heads.get_dim("nI"),
        n_tags=heads.get_dim("n_tags"),
        n_types=heads.get_dim("n_types"),
        entity_width=encoder.get_dim("nO"),
        hidden_width=heads.attrs["hidden_width"],
        dropout=heads.attrs["dropout"],
        context_width=heads.attrs["context_width"],
    )
    heads.shims[0] = torch_shim(module)


def _token_width(tok2vec: Model, docs: List[Doc]) -> int:
    """Width of the token vectors: the `nO` dim, else measured on a sample."""
    if tok2vec.has_dim("nO") is True:
        return tok2vec.get_dim("nO")
    if not docs:
        raise ValueError("cannot infer the token vector width of the tok2vec layer: initialize the model with sample docs")
    return tok2vec.predict(docs[:1])[0].shape[1]


def _forward(model: Model, inputs: RefinedInput, is_train: bool):
    tok2vec = model.get_ref("tok2vec")
    encoder = model.get_ref("description_encoder")
    heads = model.get_ref("heads")
    docs = inputs.docs
    lengths = np.array([len(doc) for doc in docs], dtype="int64")
    tokvecs, backprop_tok2vec = tok2vec(docs, is_train)
    tokens = model.ops.flatten(tokvecs) if lengths.sum() else model.ops.alloc2f(0, heads.get_dim("nI"))
    mentions, extra = inputs.mentions, Mentions.empty()
    tag_logits = None
    if mentions is None:
        tag_logits = heads.predict(HeadsInput(tokens, lengths, tags=True)).tag_logits
        log_probs = torch.log_softmax(xp2torch(tag_logits).float(), dim=1).cpu().numpy()
        log_probs[_space_tokens(docs), 1:] = IMPOSSIBLE  # whitespace is never part of a mention
        found = decode_tags(best_tags(log_probs, lengths), lengths)
        mentions, extra = found.subset(found.label == 0), found.subset(found.label > 0)
    candidates = inputs.lookup(docs, mentions, is_train)
    if candidates.vectors is not None:
        vectors, backprop_vectors = model.ops.asarray2f(candidates.vectors), None
    elif candidates.texts:
        vectors, backprop_vectors = encoder(candidates.texts, is_train)
    else:
        vectors, backprop_vectors = model.ops.alloc2f(0, encoder.get_dim("nO")), None
    doc_offsets = np.cumsum(lengths) - lengths
    mention_tokens, owners = mentions.token_index(doc_offsets)
    logits, backprop_heads = heads(
        HeadsInput(tokens, lengths, is_train, mentions=mentions, mention_tokens=mention_tokens, owners=owners, candidates=candidates, vectors=vectors),
        is_train,
    )
    output = RefinedOutput(
        mentions=mentions,
        candidates=candidates,
        tag_logits=logits.tag_logits if logits.tag_logits is not None else tag_logits,
        type_logits=logits.type_logits,
        link_logits=logits.link_logits,
        description_logits=logits.description_logits,
        extra=extra,
    )

    def backprop(d_output: Logits) -> List[Doc]:
        d_tokens, d_vectors = backprop_heads(d_output)
        if backprop_vectors is not None and d_vectors is not None:
            backprop_vectors(d_vectors)
        return backprop_tok2vec(model.ops.unflatten(d_tokens, model.ops.asarray1i(lengths)))

    return output, backprop


def _space_tokens(docs: List[Doc]) -> np.ndarray:
    """Boolean mask of the whitespace tokens ("\\n", "  ") of a batch's docs."""
    return np.concatenate([np.zeros(0, dtype=bool)] + [doc.to_array(IS_SPACE).astype(bool) for doc in docs])


def best_tags(log_probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The most probable valid BIO tag sequence of each document (Viterbi),
    from its tokens' tag log-probabilities (n_tokens, 1 + 2L; tag IDs as in
    `decode_tags`): an I tag only follows a B or I tag of its label. Tagging
    token by token instead starts mentions with I tags, and an O between a
    B and an I splits what the tagger saw as one name."""
    lengths = np.asarray(lengths, dtype="int64")
    if not len(log_probs):
        return np.zeros(0, dtype="int64")
    ids = np.arange(log_probs.shape[1])
    is_i = (ids > 0) & (ids % 2 == 0)
    previous, following = ids[:, None], ids[None, :]
    allowed = ~is_i[following] | (previous == following) | (previous == following - 1)
    transitions = np.where(allowed, 0.0, IMPOSSIBLE).astype("float32")
    # One row per document, padded with O tags of log-probability 0, which
    # any tag may precede: the padding leaves each document's best path as it is.
    doc = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(log_probs)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded = np.full((len(lengths), int(lengths.max()), len(ids)), IMPOSSIBLE, dtype="float32")
    padded[..., 0] = 0.0
    padded[doc, position] = log_probs
    score = padded[:, 0] + np.where(is_i, IMPOSSIBLE, 0.0).astype("float32")
    best_previous = np.zeros(padded.shape, dtype="int64")
    for t in range(1, padded.shape[1]):
        paths = score[:, :, None] + transitions
        best_previous[:, t] = paths.argmax(axis=1)
        score = paths.max(axis=1) + padded[:, t]
    rows = np.arange(len(lengths))
    current = score.argmax(axis=1)
    path = np.zeros(padded.shape[:2], dtype="int64")
    for t in range(padded.shape[1] - 1, -1, -1):
        path[:, t] = current
        current = best_previous[rows, t, current]
    return path[doc, position]


def decode_tags(tags: np.ndarray, lengths: np.ndarray) -> Mentions:
    """BIO tag IDs of a batch's tokens (0: O, 1 + 2l: B-l, 2 + 2l: I-l) ->
    mentions. An I tag that does not continue a mention of its label starts one."""
    tags = np.asarray(tags, dtype="int64")
    inside = tags > 0
    label = np.where(inside, (tags - 1) // 2, -1)
    is_i = inside & (tags % 2 == 0)
    doc = np.repeat(np.arange(len(lengths)), lengths)
    first = np.zeros(len(tags), dtype=bool)
    first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    previous = np.r_[-1, label[:-1]]
    continues = is_i & ~first & (previous == label)
    starts = np.flatnonzero(inside & ~continues)
    ends = np.flatnonzero(inside & ~np.r_[continues[1:], False]) + 1
    offsets = (np.cumsum(lengths) - lengths)[doc[starts]]
    return Mentions(doc[starts], starts - offsets, ends - offsets, label[starts])


@dataclass
class HeadsInput:
    tokens: Floats2d
    lengths: np.ndarray  # of the docs, in tokens
    tags: bool
    mentions: Optional[Mentions] = None
    mention_tokens: Optional[np.ndarray] = None
    owners: Optional[np.ndarray] = None
    candidates: Optional[Candidates] = None
    vectors: Optional[Floats2d] = None


def _heads_forward(model: Model, inputs: HeadsInput, is_train: bool):
    """Token vectors (+ mentions and candidates) -> logits, through the PyTorch heads."""
    device = shim_device(model)
    tokens = xp2torch(inputs.tokens, requires_grad=is_train, device=device)
    lengths = torch.as_tensor(inputs.lengths, device=device)
    kwargs = {"tags": inputs.tags}
    if inputs.mentions is not None:
        candidates = inputs.candidates
        kwargs.update(
            mention_tokens=torch.as_tensor(inputs.mention_tokens, device=device),
            mention_owners=torch.as_tensor(inputs.owners, device=device),
            n_mentions=len(inputs.mentions),
            mention_docs=torch.as_tensor(inputs.mentions.doc, device=device),
            candidate_rows=torch.as_tensor(candidates.rows, device=device),
            candidate_mask=torch.as_tensor(candidates.mask, device=device),
            priors=torch.as_tensor(candidates.priors, device=device),
            coherence=torch.as_tensor(candidates.coherence, device=device),
            entity_types=torch.as_tensor(candidates.types, device=device),
            entity_popularity=torch.as_tensor(candidates.popularity, dtype=torch.float32, device=device),
            entity_vectors=xp2torch(inputs.vectors, requires_grad=is_train, device=device),
        )
    outputs, backprop_shim = model.shims[0](ArgsKwargs(args=(tokens, lengths), kwargs=kwargs), is_train)
    logits = Logits(*(torch2xp(t, ops=model.ops) if t is not None else None for t in outputs))

    def backprop(d_output: Logits) -> Tuple[Floats2d, Optional[Floats2d]]:
        grads = (d_output.tag_logits, d_output.type_logits, d_output.link_logits, d_output.description_logits)
        pairs = [(out, xp2torch(g, device=device)) for out, g in zip(outputs, grads) if out is not None and g is not None]
        if not pairs:
            return model.ops.alloc2f(*inputs.tokens.shape), None
        d_inputs = backprop_shim(ArgsKwargs(args=(tuple(o for o, _ in pairs),), kwargs={"grad_tensors": [g for _, g in pairs]}))
        d_tokens, d_vectors = d_inputs.args[0], d_inputs.kwargs.get("entity_vectors")
        d_tokens = torch2xp(d_tokens, ops=model.ops) if d_tokens is not None else model.ops.alloc2f(*inputs.tokens.shape)
        return d_tokens, (torch2xp(d_vectors, ops=model.ops) if d_vectors is not None else None)

    return logits, backprop
