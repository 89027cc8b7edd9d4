"""Question answering over the KB as a thinc `Model`: token vectors from any
spaCy tok2vec or transformer listener, and PyTorch heads that resolve the
question's entities, follow relations over the KB's facts and intersect.

The heads (`QAHeads`), for a batch of questions:

* Entity resolution (Rigel, Oliya et al. 2021): each candidate span (the
  component gives the spans of the question that name KB entities, with
  their candidates) gets a score from its boundary tokens, its width and its
  best candidate's features; each of its candidates a score from its
  features (prior, label match) and from how well the relations around the
  candidate in the KB fit the question. The start distribution is
  `x0 = sum over spans P(span) * sum over e P(e | span)`, a differentiable
  function of both scores, so the whole model trains from answers alone.
* Reasoning (ReifiedKB, Cohen et al. 2020): at hop t a relation
  distribution from an attention over the question's tokens (a query per
  hop) and the previous hop's relations, then `x_t = follow(x_{t-1}, r_t)`
  (`follow.py`); the answer mixes the hops by a learned hop distribution, so
  a question need not say how many hops it takes. With `relation_names`,
  the tokens that name a KB relation (`relation_names.py`), weighted by the
  hop's attention, add to that relation's logit with learned weights, so
  that relations no training question used are found by their names.
* Intersection (Sen et al. 2021): with two or more candidate spans, the two
  most probable non-overlapping ones are followed separately (each with
  relations conditioned on its span) and intersected by element-wise
  minimum; a learned gate mixes the intersection into the answer.

The model's input is a `QAInput`; its output a `QAOutput` whose answers are
sparse: the (question, entity, score) entries of the entities reached with a
nonzero score, never a dense (B, N) matrix over the KB; `backprop` takes the
gradient of those scores.
"""

from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats1d, Floats2d

from ._torch import serializable, shim_device, torch_shim
from .follow import EntityWeights, FactGraph, intersect, saturate
from .relation_names import RelationMatches

# The initial weight of a name match in a relation's logit: a relation
# named exactly outweighs what the learned scores have to say (the optimizer's
# small steps would take long to get there).
NAME_WEIGHT = 5.0
# Features of a (span, candidate) pair, in this order, computed by the component.
CANDIDATE_FEATURES = ("log_prior", "label_match", "label_match_lower", "popularity")


@dataclass
class QASpans:
    """Candidate spans of a batch of questions and their KB candidates.

    doc, start, end (np.ndarray): (S,) question index and token range of each span.
    entities (np.ndarray): (S, K) global KB indices of the candidates, -1 padded.
    features (np.ndarray): (S, K, F) candidate features (`CANDIDATE_FEATURES`).
    """

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    entities: np.ndarray
    features: np.ndarray

    @classmethod
    def empty(cls, n_features: int = len(CANDIDATE_FEATURES)) -> "QASpans":
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, np.zeros((0, 1), np.int64), np.zeros((0, 1, n_features), np.float32))

    def __len__(self) -> int:
        return len(self.doc)


@dataclass
class QAInput:
    """The model's input: the questions, their candidate spans and the KB's facts."""

    docs: List[Doc]
    spans: QASpans
    graph: FactGraph
    names: RelationMatches


@dataclass
class QAOutput:
    """The model's output (numpy/cupy arrays).

    answer_rows, answer_entities: (E,) question index and KB entity of each
        entity reached with a nonzero score, sorted by question, then entity;
        every other entity's score is 0.
    answer_scores: (E,) their answer scores, in [0, 1].
    span_probs: (S,) P(span) within its question.
    candidate_probs: (S, K) P(e | span).
    relations: (B, T, R) relation distribution at each hop.
    hops: (B, T) hop distribution.
    gate: (B,) weight of the intersection in the answer (0 without one).
    spans: the input's candidate spans, which the other fields refer to.
    """

    answer_rows: np.ndarray
    answer_entities: np.ndarray
    answer_scores: Floats1d
    span_probs: np.ndarray
    candidate_probs: np.ndarray
    relations: np.ndarray
    hops: np.ndarray
    gate: np.ndarray
    spans: Optional[QASpans] = None


class _NameTensors(NamedTuple):
    """`RelationMatches` as tensors."""

    doc: torch.Tensor
    position: torch.Tensor
    relation: torch.Tensor
    values: torch.Tensor

    def of_docs(self, docs: torch.Tensor, n_docs: int) -> "_NameTensors":
        """The entries of the questions `docs` (sorted indices), renumbered as rows of `docs`."""
        row = torch.full((n_docs,), -1, dtype=torch.long, device=docs.device)
        row[docs] = torch.arange(len(docs), device=docs.device)
        keep = row[self.doc] >= 0
        return _NameTensors(row[self.doc][keep], self.position[keep], self.relation[keep], self.values[keep])


class QAHeadsOutput(NamedTuple):
    answer_rows: torch.Tensor
    answer_entities: torch.Tensor
    answer_scores: torch.Tensor
    span_probs: torch.Tensor
    candidate_probs: torch.Tensor
    relations: torch.Tensor
    hops: torch.Tensor
    gate: torch.Tensor


class _HeadsInput(NamedTuple):
    tokens: Floats2d
    lengths: np.ndarray
    spans: QASpans
    graph: FactGraph
    names: RelationMatches
    is_train: bool


@registry.architectures("spacy_refined.QAModel.v1")
def build_qa_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    hops: int = 3,
    max_span_width: int = 12,
    intersection: bool = True,
    mask_topic: bool = True,
    prune: float = 0.001,
    max_entities: int = 500,
    dropout: float = 0.1,
    relation_names: bool = False,
) -> Model[QAInput, QAOutput]:
    """Question answering over the KB: entity resolution, multi-hop
    relation following and intersection, trained from answers.

    tok2vec (Model[List[Doc], List[Floats2d]]): Token vectors, e.g.
        `spacy.HashEmbedCNN.v2`, `spacy.Tok2VecListener.v1` or
        `spacy-transformers.TransformerListener.v1`.
    hidden_width (int): Width of the span, candidate and relation layers.
    hops (int): T, the most relations a question's answer may be away from
        its entities.
    max_span_width (int): The longest span (tokens) considered as an entity
        mention.
    intersection (bool): Follow the two most probable entities separately
        and intersect (with a learned gate); false for the ablation.
    mask_topic (bool): Remove the resolved entities themselves from the
        answers and from the entities the later hops start from: MetaQA's
        questions never ask for their own entity, nor reach their answers
        through it ("the years of the films of the director of X" are those
        of X's director's other films). False where a path may lead back to
        it (PathQuestion: "the parents of X's heir").
    prune (float): Entity weights below it are dropped before each hop, so
        that the weak paths of relations with small weights do not spread
        over the graph; in prediction, an intersection whose gate is below it
        is not computed, nor the hops of a question whose weight (of this hop
        and the later ones) is below it.
    max_entities (int): At most this many entities of a question (those of
        largest weight) are followed at each hop, which bounds the work of a
        hop whatever the relation weights (early in training they are nearly
        uniform, and three hops would reach much of the graph).
    dropout (float): Dropout of the heads.
    relation_names (bool): Whether the question's tokens that name a KB
        relation (by the words of its label) add to that relation's logit,
        weighted by each hop's attention: relations that no training
        question used are then found by their names.
    RETURNS (Model[QAInput, QAOutput]): The model.
    """
    heads = Model(
        "refined_qa_heads",
        pytorch_forward,
        dims={"nI": None, "n_relations": None},
        attrs={
            "convert_inputs": _heads_inputs,
            "convert_outputs": _heads_outputs,
            "hidden_width": hidden_width,
            "hops": hops,
            "intersection": intersection,
            "mask_topic": mask_topic,
            "prune": prune,
            "max_entities": max_entities,
            "dropout": dropout,
            "relation_names": relation_names,
        },
        shims=[torch_shim()],
    )
    return Model(
        "refined_qa",
        _forward,
        init=_init,
        layers=[tok2vec, heads],
        refs={"tok2vec": tok2vec, "heads": heads},
        attrs={"max_span_width": max_span_width},
    )


def set_relation_count(model: Model, n_relations: int) -> None:
    """Size the relation layers (before `initialize`): the relations of the
    `FactGraph` the model follows (inverse ones included)."""
    model.get_ref("heads").set_dim("n_relations", n_relations, force=True)


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    tok2vec = model.get_ref("tok2vec")
    heads = model.get_ref("heads")
    docs = [doc for doc in (X or []) if len(doc)]
    tok2vec.initialize(X=docs or None)
    if tok2vec.has_dim("nO") is True:
        width = tok2vec.get_dim("nO")
    elif docs:
        width = tok2vec.predict(docs[:1])[0].shape[1]
    else:
        raise ValueError(
            "cannot infer the token vector width of the tok2vec layer: initialize the model with sample docs"
        )
    heads.set_dim("nI", width, force=True)
    module = QAHeads(
        width=width,
        n_relations=heads.get_dim("n_relations"),
        hidden_width=heads.attrs["hidden_width"],
        hops=heads.attrs["hops"],
        max_span_width=model.attrs["max_span_width"],
        intersection=heads.attrs["intersection"],
        mask_topic=heads.attrs["mask_topic"],
        prune=heads.attrs["prune"],
        max_entities=heads.attrs["max_entities"],
        dropout=heads.attrs["dropout"],
        relation_names=heads.attrs["relation_names"],
    )
    heads.shims[0] = torch_shim(module)


def _forward(model: Model, inputs: QAInput, is_train: bool) -> Tuple[QAOutput, Callable[[Floats1d], List[Doc]]]:
    tok2vec = model.get_ref("tok2vec")
    heads = model.get_ref("heads")
    lengths = np.array([len(doc) for doc in inputs.docs], dtype="int64")
    tokvecs, backprop_tok2vec = tok2vec(inputs.docs, is_train)
    tokens = model.ops.flatten(tokvecs) if lengths.sum() else model.ops.alloc2f(0, heads.get_dim("nI"))
    output, backprop_heads = heads(
        _HeadsInput(tokens, lengths, inputs.spans, inputs.graph, inputs.names, is_train), is_train
    )
    output.spans = inputs.spans

    def backprop(d_scores: Floats1d) -> List[Doc]:
        d_tokens = backprop_heads(d_scores)
        return backprop_tok2vec(model.ops.unflatten(d_tokens, model.ops.asarray1i(lengths)))

    return output, backprop


def _heads_inputs(model: Model, inputs: _HeadsInput, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    device = shim_device(model)
    spans = inputs.spans
    tokens = xp2torch(inputs.tokens, requires_grad=is_train, device=device)
    arguments = ArgsKwargs(
        args=(tokens, torch.as_tensor(inputs.lengths, device=device)),
        kwargs={
            "span_doc": torch.as_tensor(spans.doc, device=device),
            "span_start": torch.as_tensor(spans.start, device=device),
            "span_end": torch.as_tensor(spans.end, device=device),
            "entities": torch.as_tensor(spans.entities, device=device),
            "features": torch.as_tensor(spans.features, dtype=torch.float32, device=device),
            "graph": inputs.graph,
            "names": _NameTensors(
                torch.as_tensor(inputs.names.doc, device=device),
                torch.as_tensor(inputs.names.position, device=device),
                torch.as_tensor(inputs.names.relation, device=device),
                torch.as_tensor(inputs.names.values, dtype=torch.float32, device=device),
            ),
        },
    )

    def get_d_inputs(d_arguments: ArgsKwargs) -> Floats2d:
        d_tokens = d_arguments.args[0]
        return torch2xp(d_tokens, ops=model.ops) if d_tokens is not None else model.ops.alloc2f(*inputs.tokens.shape)

    return arguments, get_d_inputs


def _heads_outputs(
    model: Model, inputs_outputs: Tuple[_HeadsInput, QAHeadsOutput], is_train: bool
) -> Tuple[QAOutput, Callable]:
    outputs = inputs_outputs[1]
    scores = torch2xp(outputs.answer_scores, ops=model.ops)
    rest = {name: t.detach().cpu().numpy() for name, t in outputs._asdict().items() if name != "answer_scores"}

    def get_d_outputs(d_scores: Floats1d) -> ArgsKwargs:
        d = xp2torch(d_scores, device=outputs.answer_scores.device)
        return ArgsKwargs(args=((outputs.answer_scores,),), kwargs={"grad_tensors": [d]})

    return QAOutput(answer_scores=scores, **rest), get_d_outputs


@serializable
class QAHeads(torch.nn.Module):
    """The QA heads over token vectors (see the module docstring)."""

    def __init__(
        self,
        width: int,
        n_relations: int,
        hidden_width: int,
        hops: int,
        max_span_width: int,
        intersection: bool,
        mask_topic: bool,
        prune: float,
        max_entities: int,
        dropout: float,
        relation_names: bool = False,
    ) -> None:
        super().__init__()
        self.config = {
            "width": width,
            "n_relations": n_relations,
            "hidden_width": hidden_width,
            "hops": hops,
            "max_span_width": max_span_width,
            "intersection": intersection,
            "mask_topic": mask_topic,
            "prune": prune,
            "max_entities": max_entities,
            "dropout": dropout,
            "relation_names": relation_names,
        }
        n_features = len(CANDIDATE_FEATURES)
        self.hops = hops
        self.intersection = intersection
        self.mask_topic = mask_topic
        self.prune = prune
        self.max_entities = max_entities
        self.dropout = torch.nn.Dropout(dropout)
        self.span_width = torch.nn.Embedding(max_span_width + 1, 16)
        self.span_layer = torch.nn.Sequential(torch.nn.Linear(2 * width + 16, hidden_width), torch.nn.ReLU())
        self.span_score = torch.nn.Linear(hidden_width + n_features, 1)
        self.candidate_features = torch.nn.Linear(n_features, 1)
        self.candidate_query = torch.nn.Linear(hidden_width, hidden_width)
        self.relation_keys = torch.nn.Linear(n_relations, hidden_width, bias=False)
        self.hop_queries = torch.nn.Parameter(torch.randn(hops, width) * 0.1)
        self.relation_layer = torch.nn.Sequential(
            torch.nn.Linear(width + hidden_width + n_relations, hidden_width),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_width, n_relations),
        )
        self.hop_layer = torch.nn.Linear(width, hops)
        self.gate_layer = torch.nn.Linear(width + 1, 1)
        # weights of a relation's name matches (share of the token's words in
        # its label, overlap with its last segment) in its logit
        self.name_weights = torch.nn.Parameter(torch.full((2,), NAME_WEIGHT)) if relation_names else None

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        *,
        span_doc: torch.Tensor,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        entities: torch.Tensor,
        features: torch.Tensor,
        graph: FactGraph,
        names: "_NameTensors",
    ) -> QAHeadsOutput:
        n_docs = len(lengths)
        n_relations = self.config["n_relations"]
        tokens = self.dropout(tokens)
        padded, mask = _pad(tokens, lengths)
        # ---- entity resolution
        offsets = torch.cumsum(lengths, 0) - lengths
        first = offsets[span_doc] + span_start
        last = offsets[span_doc] + span_end - 1
        width = torch.clamp(span_end - span_start, max=self.span_width.num_embeddings - 1)
        span_vectors = self.span_layer(torch.cat([tokens[first], tokens[last], self.span_width(width)], dim=1))
        valid = entities >= 0
        signatures = _relation_signatures(graph, entities.clamp(min=0), n_relations) * valid.unsqueeze(-1)
        candidate_logits = self.candidate_features(features).squeeze(-1)
        candidate_logits = candidate_logits + (
            self.candidate_query(span_vectors).unsqueeze(1) * self.relation_keys(signatures)
        ).sum(-1)
        candidate_probs = _masked_softmax(candidate_logits, valid, dim=1)
        best_features = (features * candidate_probs.unsqueeze(-1)).sum(1)
        span_logits = self.span_score(torch.cat([span_vectors, best_features], dim=1)).squeeze(1)
        span_probs = _grouped_softmax(span_logits, span_doc, n_docs)
        x0 = _entity_weights(span_probs.unsqueeze(1) * candidate_probs, span_doc, entities, n_docs, graph.n_entities)
        context = torch.zeros(n_docs, span_vectors.shape[1], device=tokens.device).index_add(
            0, span_doc, span_probs.unsqueeze(1) * span_vectors
        )
        # ---- reasoning
        pooled = (padded * mask.unsqueeze(-1)).sum(1) / lengths.clamp(min=1).unsqueeze(1)
        hop_probs = torch.softmax(self.hop_layer(pooled), dim=1)
        answers, relations = self._follow(x0, padded, mask, context, hop_probs, graph, names)
        gate = tokens.new_zeros(n_docs)
        if self.intersection and len(span_doc):
            answers, gate = self._intersect(
                answers,
                padded,
                mask,
                pooled,
                hop_probs,
                graph,
                span_doc,
                span_probs,
                candidate_probs,
                span_vectors,
                entities,
                span_start,
                span_end,
                names,
            )
        if self.mask_topic:
            answers = answers.with_values(answers.values * (1.0 - torch.clamp(_lookup(x0, answers.keys), max=1.0)))
        return QAHeadsOutput(
            answers.rows, answers.entities, answers.values, span_probs, candidate_probs, relations, hop_probs, gate
        )

    def _follow(
        self,
        x: EntityWeights,
        padded: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        hop_probs: torch.Tensor,
        graph: FactGraph,
        names: "_NameTensors",
    ) -> Tuple[EntityWeights, torch.Tensor]:
        """T hops from `x` with relations conditioned on `context` (and on the
        relations the question's tokens name); the hops mixed by `hop_probs`:
        the (B, N) answers and the (B, T, R) relations."""
        n_docs = x.shape[0]
        previous = padded.new_zeros(n_docs, self.config["n_relations"])
        reached: List[EntityWeights] = []
        relations = []
        # the weight of hops t and later: in prediction, a question's hops
        # from where it is below `prune` are not followed (a 1-hop question
        # does not pay for three), nor kept in its answers where their own
        # weight is below it
        remaining = torch.flip(torch.cumsum(torch.flip(hop_probs.detach(), [1]), 1), [1])
        start = x
        uses_names = self.name_weights is not None and len(names.doc) > 0
        if uses_names:
            naming = torch.zeros_like(mask, dtype=padded.dtype).index_put(
                (names.doc, names.position), torch.ones_like(names.doc, dtype=padded.dtype)
            )
            # how fully the question names each relation (the share of its
            # name's words, 0-1)
            coverage = (
                torch.zeros_like(previous)
                .index_put((names.doc, names.relation), names.values[:, 1], accumulate=True)
                .clamp(max=1.0)
            )
        for t in range(self.hops):
            if t and self.mask_topic:  # no path comes back through the question's own entities
                x = x.with_values(x.values * (1.0 - torch.clamp(_lookup(start, x.keys), max=1.0)))
            query, attention = _attend(padded, mask, self.hop_queries[t].expand(n_docs, -1))
            logits = self.relation_layer(torch.cat([query, context, previous], dim=1))
            if uses_names:
                # the learned scores, which know only the relations of the
                # training questions, count less as the hop reads tokens
                # that name a relation fully (a constant for the optimizer:
                # the attention must not learn to look away to keep them)
                on_name = attention.detach()[names.doc, names.position] * coverage[names.doc, names.relation]
                reading = torch.zeros_like(logits).index_put((names.doc, names.relation), on_name, accumulate=True)
                learned_share = 1.0 - reading.clamp(max=1.0).amax(1, keepdim=True)
                logits = logits * learned_share + self._name_logits(attention, naming, names, logits.shape[1])
            r = torch.softmax(logits, dim=1)
            keep = x.values.detach() >= self.prune
            if not self.training:
                keep &= remaining[x.rows, t] >= self.prune
            x = graph.follow_sparse(x.keep(keep).top(self.max_entities), r)
            x = x.with_values(saturate(x.values))
            hop = x.with_values(hop_probs[x.rows, t] * x.values)
            reached.append(hop if self.training else hop.keep(hop_probs[hop.rows, t].detach() >= self.prune))
            relations.append(r)
            previous = r
        return EntityWeights.concatenate(reached, x.shape), torch.stack(relations, dim=1)

    def _name_logits(
        self, attention: torch.Tensor, naming: torch.Tensor, names: "_NameTensors", n_relations: int
    ) -> torch.Tensor:
        """(B, R) logits of the relations that the tokens a hop reads name:
        each name match weighted by the hop's attention on its token,
        renormalised over the tokens that name a relation (`naming`, (B, L))."""
        read = attention * naming
        read = read / read.sum(1, keepdim=True).clamp(min=1e-9)
        matched = read[names.doc, names.position].unsqueeze(1) * names.values * self.name_weights
        return attention.new_zeros(len(attention), n_relations).index_put(
            (names.doc, names.relation), matched.sum(1), accumulate=True
        )

    def _intersect(
        self,
        answers: EntityWeights,
        padded: torch.Tensor,
        mask: torch.Tensor,
        pooled: torch.Tensor,
        hop_probs: torch.Tensor,
        graph: FactGraph,
        span_doc: torch.Tensor,
        span_probs: torch.Tensor,
        candidate_probs: torch.Tensor,
        span_vectors: torch.Tensor,
        entities: torch.Tensor,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        names: "_NameTensors",
    ) -> Tuple[EntityWeights, torch.Tensor]:
        """Mix in the intersection of the answers of the two most probable
        non-overlapping spans; the answers and the (B,) gate."""
        n_docs = answers.shape[0]
        first, second = _top_two_spans(span_doc, span_probs, span_start, span_end, n_docs)
        has_two = second >= 0
        gate = torch.sigmoid(
            self.gate_layer(torch.cat([pooled, span_probs[second.clamp(min=0)].unsqueeze(1)], dim=1))
        ).squeeze(1)
        if not self.training:  # a closed gate adds nothing: skip its branches
            has_two = has_two & (gate >= self.prune)
        gate = gate * has_two
        if not bool(has_two.any()):
            return answers, gate
        docs = torch.nonzero(has_two).squeeze(1)
        names = names.of_docs(docs, n_docs)
        branches = []
        for chosen in (first[docs], second[docs]):
            x = _entity_weights(
                candidate_probs[chosen],
                torch.arange(len(docs), device=gate.device),
                entities[chosen],
                len(docs),
                graph.n_entities,
            )
            branch, _ = self._follow(x, padded[docs], mask[docs], span_vectors[chosen], hop_probs[docs], graph, names)
            branches.append(branch)
        both = intersect(*branches)
        rows = docs[both.rows]
        both = EntityWeights(rows, both.entities, gate[rows] * both.values, answers.shape)
        single = answers.with_values((1.0 - gate[answers.rows]) * answers.values)
        return EntityWeights.concatenate([single, both], answers.shape), gate


def _pad(tokens: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum(lengths), W) -> (B, L, W) zero-padded, and the (B, L) mask of real tokens."""
    n_docs = len(lengths)
    max_length = int(lengths.max()) if n_docs else 0
    max_length = max(max_length, 1)
    mask = torch.arange(max_length, device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
    padded = tokens.new_zeros(n_docs, max_length, tokens.shape[1])
    padded[mask] = tokens
    return padded, mask


def _attend(padded: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention pooling of each question's tokens by its query (B, W): the
    pooled vectors and the (B, L) weights; zeros for an empty question."""
    scores = (padded * query.unsqueeze(1)).sum(-1) / padded.shape[2] ** 0.5
    weights = _masked_softmax(scores, mask, dim=1)
    return (weights.unsqueeze(-1) * padded).sum(1), weights


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over the entries where `mask`; all-zero where none is."""
    logits = logits.masked_fill(~mask, -1e9)
    return torch.softmax(logits, dim=dim) * mask.any(dim=dim, keepdim=True) * mask


def _grouped_softmax(logits: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Softmax of `logits` within each group (S,) -> (S,)."""
    if not len(logits):
        return logits
    maxima = torch.full((n_groups,), -1e9, device=logits.device).scatter_reduce(
        0, groups, logits.detach(), reduce="amax"
    )
    exp = torch.exp(logits - maxima[groups])
    totals = torch.zeros(n_groups, device=logits.device).index_add(0, groups, exp)
    return exp / totals[groups]


def _entity_weights(
    weights: torch.Tensor, rows: torch.Tensor, entities: torch.Tensor, n_rows: int, n_entities: int
) -> EntityWeights:
    """(S, K) weights of the candidates `entities` (-1: none) of spans in rows `rows` -> sparse (n_rows, N)."""
    valid = entities >= 0
    flat_rows = rows.unsqueeze(1).expand_as(entities)[valid]
    return EntityWeights.coalesce(flat_rows, entities[valid], weights[valid], (n_rows, n_entities))


def _lookup(x: EntityWeights, keys: torch.Tensor) -> torch.Tensor:
    """The values of the coalesced `x` at the (row * N + entity) `keys`; 0 where it has none."""
    if not len(x.values):
        return x.values.new_zeros(len(keys))
    own = x.keys
    position = torch.searchsorted(own, keys).clamp(max=len(own) - 1)
    return torch.where(own[position] == keys, x.values[position], x.values.new_zeros(()))


def _relation_signatures(graph: FactGraph, entities: torch.Tensor, n_relations: int) -> torch.Tensor:
    """(S, K, R): which relations (inverse ones included) leave each candidate in the KB."""
    unique, inverse = torch.unique(entities.cpu(), return_inverse=True)
    rows, owner = graph.fact_rows(unique)
    table = torch.zeros(len(unique), n_relations)
    if len(rows):
        relations = graph.relations[rows].long()
        keep = relations < n_relations
        table[owner[keep], relations[keep]] = 1.0
    return table[inverse].to(entities.device)


def _top_two_spans(
    span_doc: torch.Tensor, span_probs: torch.Tensor, start: torch.Tensor, end: torch.Tensor, n_docs: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per question, the most probable span and the most probable one not
    overlapping it (-1: none; ties to the first span)."""
    probs = span_probs.detach()
    first = _argmax_by_group(probs, span_doc, n_docs)
    chosen = first[span_doc].clamp(min=0)
    apart = (end <= start[chosen]) | (start >= end[chosen])
    second = _argmax_by_group(probs.masked_fill(~apart, -1.0), span_doc, n_docs, floor=0.0)
    return first, second


def _argmax_by_group(values: torch.Tensor, groups: torch.Tensor, n_groups: int, floor: float = -1.0) -> torch.Tensor:
    """(n_groups,) the first position of each group's largest value (-1 for
    a group without positions, or whose largest value is below `floor`)."""
    best = torch.full((n_groups,), -2.0, device=values.device).scatter_reduce(0, groups, values, reduce="amax")
    positions = torch.arange(len(values), device=values.device)
    at_best = (values == best[groups]) & (values >= floor)
    none = len(values)
    found = torch.full((n_groups,), none, dtype=torch.long, device=values.device).scatter_reduce(
        0, groups, torch.where(at_best, positions, torch.full_like(positions, none)), reduce="amin"
    )
    return torch.where(found < none, found, torch.full_like(found, -1))
