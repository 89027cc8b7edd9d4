"""The `refined_qa` component: answers questions from the KB's facts.

It reads a question `Doc`, resolves its entities in the KB, follows
relations from them over the KB's facts (`model/follow.py`), intersects
when the question names several entities, and writes the ranked answers
with their explanation. The model is `spacy_refined.QAModel.v1`
(`model/qa.py`); the settings are documented on the factory.

Design notes:

* The KB is the one of the pipeline's `refined_kb` component (as for the
  linker), so a KB grown with `kb add` answers about the new entities at
  once: the fact graph is rebuilt whenever the KB changes, and entity
  resolution reads the KB's alias table.
* Trained from (question, answers) pairs alone with the default
  `entities = "learned"`: the loss is on the answers only (a weighted binary
  cross-entropy of each entity's score), and the spans and candidates that
  start the traversal get their gradients through it. Cross-entropy rather
  than a squared error: the gradient a relation receives through the
  relation softmax is its weight times the loss's gradient at the answers,
  so with a squared error (bounded gradient) a relation whose weight is near
  zero never recovers, and entity resolution learns to escape to spans whose
  entities lack the relation the head settled on (all-zero answers cost
  less than wrong ones); the log's gradient at a gold answer grows as its
  score shrinks and cancels that factor.
* The candidate spans of a question are all its spans of up to
  `max_span_width` tokens that name a KB entity (the alias table, through
  the same candidate generator as the linker's).
"""

import os
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import srsly
from spacy import util
from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LENGTH
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.strings import hash_string
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, NumpyOps, Optimizer, set_dropout_rate

from ..evaluation.qa import ANSWERS_KEY, TOPIC_KEY, make_qa_scorer  # noqa: F401  (registers the scorer)
from ..ids import NIL
from ..kb.candidates import CandidateGenerator
from ..kb.errors import KBError
from ..kb.store import RefinedKB
from ..model.follow import FactGraph
from ..model.qa import CANDIDATE_FEATURES, QAInput, QAOutput, QASpans, set_relation_count
from ..model.relation_names import RelationMatches, RelationNames
from ..model.threads import torch_threads
from ..util import concatenated_ranges
from .knowledge_base import KBListener

ENTITY_MODES = ("learned", "gold", "linker")
EXTENSIONS = ("answers", "qa_entities", "qa_path", "qa_status")
QA_ENTITY_LABEL = "QA_ENTITY"
_EPSILON = 1e-6  # answer scores are clipped to [eps, 1 - eps] in the loss

DEFAULT_MODEL = """
[model]
@architectures = "spacy_refined.QAModel.v1"
hidden_width = 128
hops = 3
max_span_width = 12
intersection = true
mask_topic = true
dropout = 0.1
relation_names = true

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 5000
window_size = 1
maxout_pieces = 3
subword_features = true
"""
DEFAULT_MODEL_CONFIG = Config().from_str(DEFAULT_MODEL)["model"]
DEFAULT_CONFIG = {
    "model": DEFAULT_MODEL_CONFIG,
    "kb_component": "*",
    "entities": "learned",
    "get_candidates": {"@misc": "spacy_refined.PriorCandidates.v1", "person_names": False},
    "n_candidates": 10,
    "topic_key": TOPIC_KEY,
    "spans_key": "qa_entities",
    "top_k": 10,
    "answer_threshold": 0.5,
    "min_entity_score": 0.1,
    "top_relations": 3,
    "answer_weight": 10.0,
    "cpu_threads": 1,
    "scorer": {"@scorers": "spacy_refined.qa_scorer.v1"},
}


@Language.factory(
    "refined_qa",
    assigns=["doc._.answers", "doc._.qa_entities", "doc._.qa_path", "doc._.qa_status", "doc.spans"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={"qa_hits1": 1.0, "qa_hits_k": 0.0, "qa_f1": 0.0, "qa_er_acc": 0.0},
)
def make_refined_qa(
    nlp: Language,
    name: str,
    model: Model[QAInput, QAOutput],
    kb_component: str,
    entities: str,
    get_candidates: CandidateGenerator,
    n_candidates: int,
    topic_key: str,
    spans_key: str,
    top_k: int,
    answer_threshold: float,
    min_entity_score: float,
    top_relations: int,
    answer_weight: float,
    cpu_threads: int,
    scorer: Optional[Callable],
) -> "RefinedQA":
    """Construct a `RefinedQA`: question answering over the KB of a `refined_kb` component.

    model (Model[QAInput, QAOutput]): The model (`spacy_refined.QAModel.v1`):
        an encoder (tok2vec or a transformer listener) and the QA heads.
    kb_component (str): The `refined_kb` component whose KB this one uses;
        "*" for any (the pipeline's one).
    entities (str): Where the entities that start the traversal come from:
        "learned" (the question's spans are scored and their KB candidates
        ranked, trained from answers only), "gold" (the annotated topic
        entities of `doc.spans[topic_key]`, by `kb_id_`) or "linker"
        (`doc.ents` with their `kb_id_`, e.g. from a `refined_linker`).
    get_candidates (Callable[[RefinedKB, Sequence[str], int], CandidateCSR]):
        The candidate generator (as the linker's) for "learned".
    n_candidates (int): Candidates per span.
    topic_key (str): The span group of annotated topic entities ("gold").
    spans_key (str): The span group that receives the resolved entities,
        with their `kb_id_` and scores in `attrs["scores"]`.
    top_k (int): How many (entity ID, score) pairs go to `doc._.answers`.
    answer_threshold (float): The score from which an answer belongs to the
        predicted answer set (answer-set F1).
    min_entity_score (float): Resolved spans with P(span) below it are not
        reported in `doc._.qa_entities` (the best span always is).
    top_relations (int): Relations reported per hop in `doc._.qa_path`.
    answer_weight (float): Weight of the gold answers in the cross-entropy
        loss (the other entities have weight 1).
    cpu_threads (int): Torch's intra-op threads during prediction and
        training on CPU (0: torch's setting): the heads' sparse operations
        are small, and more threads cost more in synchronisation than they
        bring.
    scorer (Optional[Callable]): The scoring method (`spacy_refined.qa_scorer.v1`).
    RETURNS (RefinedQA): The component.
    """
    return RefinedQA(
        nlp.vocab,
        model,
        name,
        kb_component=kb_component,
        entities=entities,
        get_candidates=get_candidates,
        n_candidates=n_candidates,
        topic_key=topic_key,
        spans_key=spans_key,
        top_k=top_k,
        answer_threshold=answer_threshold,
        min_entity_score=min_entity_score,
        top_relations=top_relations,
        answer_weight=answer_weight,
        cpu_threads=cpu_threads,
        scorer=scorer,
    )


def install_extensions() -> None:
    """Register the doc extensions the component writes (once per process)."""
    for extension in EXTENSIONS:
        if not Doc.has_extension(extension):
            Doc.set_extension(extension, default=None)


class RefinedQA(KBListener, TrainablePipe):
    """Question answering over a `RefinedKB`'s facts."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[QAInput, QAOutput],
        name: str,
        *,
        kb_component: str,
        entities: str,
        get_candidates: CandidateGenerator,
        n_candidates: int,
        topic_key: str,
        spans_key: str,
        top_k: int,
        answer_threshold: float,
        min_entity_score: float,
        top_relations: int,
        answer_weight: float,
        cpu_threads: int,
        scorer: Optional[Callable],
    ) -> None:
        """Initialize the component; see `make_refined_qa` for the settings."""
        if entities not in ENTITY_MODES:
            raise ValueError(f"[{name}] unknown entities {entities!r}: use one of {', '.join(ENTITY_MODES)}")
        if cpu_threads < 0:
            raise ValueError(f"[{name}] cpu_threads must be 0 (torch's setting) or more, not {cpu_threads}")
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.kb_component = kb_component
        self.entities = entities
        self.get_candidates = get_candidates
        self.n_candidates = n_candidates
        self.topic_key = topic_key
        self.spans_key = spans_key
        self.top_k = top_k
        self.answer_threshold = answer_threshold
        self.min_entity_score = min_entity_score
        self.top_relations = top_relations
        self.answer_weight = answer_weight
        self.cpu_threads = cpu_threads
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"relation_ids": None}
        self._graph: Optional[FactGraph] = None
        self._graph_key: Optional[Tuple[int, int]] = None
        self._relation_names: Optional[RelationNames] = None
        self._labels: Dict[int, Tuple[int, int, int, int]] = {}
        self._owner_pid = os.getpid()

    # --------------------------------------------------------------------- KB

    def kb_changed(self, kb: RefinedKB) -> None:
        """Drop the fact graph of the previous KB."""
        self._graph = None

    @property
    def relation_ids(self) -> List[str]:
        """The KB relations the model was sized for (their inverses follow them in the graph)."""
        if self.cfg["relation_ids"] is None:
            raise ValueError(f"[{self.name}] not initialized: call nlp.initialize() or load a trained pipeline")
        return self.cfg["relation_ids"]

    @property
    def graph(self) -> FactGraph:
        """The KB's facts for `follow`, rebuilt when the KB changes: another
        KB (`kb_changed`), or one that `kb add` grew and `reload` re-opened."""
        kb = self.require_kb()
        key = (len(kb), len(kb.segments))
        if self._graph is None or key != self._graph_key:
            relation_ids = self.relation_ids
            if list(kb.relation_ids[: len(relation_ids)]) != list(relation_ids):
                raise KBError(
                    f"[{self.name}] the KB at {kb.path} has relations {kb.relation_ids[: len(relation_ids)]}, but the "
                    f"model was trained with {relation_ids}: use the KB it was trained with (or one grown from it)"
                )
            self._graph = FactGraph.from_kb(kb, inverse=True, n_relations=len(relation_ids))
            self._graph_key = key
            self._labels = {}
            self._relation_names = None
        return self._graph

    @property
    def relation_names(self) -> RelationNames:
        """The index of the content words of the graph's relation labels (an
        inverse relation has its relation's words)."""
        graph = self.graph
        if self._relation_names is None:
            kb = self.require_kb()
            labels = [label or id_ for id_, label in zip(kb.relation_ids, kb.relation_labels)]
            labels = labels[: len(self.relation_ids)]
            stop_words = frozenset(util.get_lang_class(self.vocab.lang).Defaults.stop_words)
            self._relation_names = RelationNames((labels + labels)[: graph.n_relations], stop_words)
        return self._relation_names

    # ------------------------------------------------------------- training

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Size the relation layers from the KB's relations and initialize the model.

        RAISES (KBError): If the KB has no facts: there is nothing to follow.
        """
        validate_get_examples(get_examples, "RefinedQA.initialize")
        kb = self.require_kb()
        n_facts = sum(len(segment.fact_subjects) for segment in kb.segments)
        if n_facts == 0 or not kb.relation_ids:
            raise KBError(
                f"[{self.name}] the KB at {kb.path} has no facts, so there are no relations to follow: build it "
                f'with facts (`kb build --triples kb.tsv`, or entities with "facts")'
            )
        self.cfg["relation_ids"] = list(kb.relation_ids)
        self._graph = None
        set_relation_count(self.model, self.graph.n_relations)
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of questions with their gold answers (`Example.reference.user_data["qa_answers"]`)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RefinedQA.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        docs = [eg.predicted for eg in examples]
        with torch_threads(self._threads, self._owner_pid):
            output, backprop = self.model.begin_update(self._input(docs))
            loss, d_scores = self.get_loss(examples, output)
            backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], output: QAOutput) -> Tuple[float, Any]:
        """Weighted binary cross-entropy of the answer scores against the gold
        answers, and its gradient with respect to the (sparse) scores of the
        entities reached. The entities not reached have score 0: the
        others among them cost nothing, the gold ones a constant (their
        score can only grow through the reached entities' gradient)."""
        examples = list(examples)
        ops = self.model.ops
        kb = self.require_kb()
        n_entities = len(kb)
        gold = [kb.find(eg.reference.user_data.get(ANSWERS_KEY, [])) for eg in examples]
        gold_keys = np.unique(
            np.concatenate(
                [i * n_entities + found[found >= 0] for i, found in enumerate(gold)] + [np.zeros(0, "int64")]
            )
        )
        keys = output.answer_rows.astype("int64") * n_entities + output.answer_entities
        targets = np.isin(keys, gold_keys)
        unreached = len(gold_keys) - int(targets.sum())
        targets = ops.asarray1f(targets.astype("float32"))
        weights = 1.0 + (self.answer_weight - 1.0) * targets
        p = ops.xp.clip(output.answer_scores, _EPSILON, 1.0 - _EPSILON)
        n = max(1, len(examples))
        loss = -float((weights * (targets * ops.xp.log(p) + (1.0 - targets) * ops.xp.log1p(-p))).sum())
        loss -= self.answer_weight * unreached * float(np.log(_EPSILON))
        return loss / n, weights * (p - targets) / (p * (1.0 - p)) / n

    # ------------------------------------------------------------ prediction

    def predict(self, docs: Iterable[Doc]) -> QAOutput:
        """Answer scores of the KB's entities for each question, with the explanation."""
        docs = list(docs)
        with torch_threads(self._threads, self._owner_pid):
            return self.model.predict(self._input(docs))

    @property
    def _threads(self) -> int:
        """Torch's threads inside this component's work: `cpu_threads` on CPU, torch's setting on GPU."""
        return self.cpu_threads if isinstance(self.model.ops, NumpyOps) else 0

    def set_annotations(self, docs: Iterable[Doc], output: QAOutput) -> None:
        """Write `doc._.answers`, `doc._.qa_entities` (and the span group
        `spans_key`), `doc._.qa_path` and `doc._.qa_status`."""
        docs = list(docs)
        kb = self.require_kb()
        rows, entities, scores = self._top_answers(output, len(docs))
        answers = list(zip(kb.entity_ids(entities), scores.tolist()))
        answer_bounds = np.searchsorted(rows, np.arange(len(docs) + 1)).tolist()
        resolved, resolved_bounds = self._resolved(docs, output, kb)
        path_names = self.graph.relation_names(self.relation_ids)
        n_top = min(self.top_relations, output.relations.shape[2])
        top_relations = np.argsort(-output.relations, axis=2, kind="stable")[:, :, :n_top]
        top_weights = np.take_along_axis(output.relations, top_relations, axis=2).tolist()
        top_relations = top_relations.tolist()
        hops = output.hops.tolist()
        gates = output.gate.tolist()
        for i, doc in enumerate(docs):
            extensions = doc._
            doc_answers = answers[answer_bounds[i] : answer_bounds[i + 1]]
            doc_entities = resolved[resolved_bounds[i] : resolved_bounds[i + 1]]
            extensions.answers = doc_answers
            extensions.qa_entities = doc_entities
            extensions.qa_path = (
                [
                    {
                        "hop": t + 1,
                        "weight": weight,
                        "relations": [(path_names[r], w) for r, w in zip(top_relations[i][t], top_weights[i][t])],
                    }
                    for t, weight in enumerate(hops[i])
                ]
                if doc_entities
                else []
            )
            group = SpanGroup(
                doc,
                name=self.spans_key,
                attrs={"scores": [e["score"] for e in doc_entities], "intersection": gates[i]},
            )
            for entity in doc_entities:
                group.append(Span(doc, entity["start"], entity["end"], label=QA_ENTITY_LABEL, kb_id=entity["kb_id"]))
            doc.spans[self.spans_key] = group
            if not len(doc):
                extensions.qa_status = "empty"
            elif not doc_entities:
                extensions.qa_status = "no_entity"
            elif not doc_answers:
                extensions.qa_status = "no_answer"
            else:
                extensions.qa_status = "answered"

    def _top_answers(self, output: QAOutput, n_docs: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each question's `top_k` answers with a positive score, best first
        (ties by entity index): their rows (sorted), entities and scores."""
        rows, entities = output.answer_rows, output.answer_entities
        scores = self.model.ops.to_numpy(output.answer_scores)
        positive = scores > 0
        rows, entities, scores = rows[positive], entities[positive], scores[positive]
        # one sort key: the row, then the score descending (scores are in (0, 1]); the
        # entries come sorted by row and entity, which the stable sort keeps for ties
        order = np.argsort(rows + (1.0 - scores.astype(np.float64)), kind="stable")
        rows, entities, scores = rows[order], entities[order], scores[order]
        counts = np.bincount(rows, minlength=n_docs)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < self.top_k
        return rows[keep], entities[keep], scores[keep]

    def _resolved(self, docs: List[Doc], output: QAOutput, kb: RefinedKB) -> Tuple[List[Dict[str, Any]], List[int]]:
        """The questions' resolved spans, each question's most probable first
        (its best always, the others from `min_entity_score`), with their best
        candidate and its score; and each question's bounds in that list."""
        spans = output.spans
        probs = output.span_probs
        order = np.lexsort((-probs, spans.doc))
        first = np.r_[True, spans.doc[order][1:] != spans.doc[order][:-1]] if len(order) else np.zeros(0, bool)
        order = order[first | (probs[order] >= self.min_entity_score)]
        best = np.argmax(output.candidate_probs[order], axis=1) if len(order) else np.zeros(0, np.int64)
        ids = kb.entity_ids(spans.entities[order, best])
        scores = (probs[order] * output.candidate_probs[order, best]).tolist()
        rows, starts, ends = spans.doc[order].tolist(), spans.start[order].tolist(), spans.end[order].tolist()
        resolved = [
            {"start": a, "end": b, "text": docs[d][a:b].text, "kb_id": entity_id, "score": score}
            for d, a, b, entity_id, score in zip(rows, starts, ends, ids, scores)
        ]
        return resolved, np.searchsorted(spans.doc[order], np.arange(len(docs) + 1)).tolist()

    # ------------------------------------------------------ spans and input

    def _input(self, docs: List[Doc]) -> QAInput:
        uses_names = self.model.get_ref("heads").attrs["relation_names"]
        names = self.relation_names(docs) if uses_names else RelationMatches.empty()
        return QAInput(docs, self._spans(docs), self.graph, names)

    def _spans(self, docs: List[Doc]) -> QASpans:
        """The candidate spans of the questions and their candidates, by the `entities` setting."""
        kb = self.require_kb()
        if self.entities == "learned":
            return self._learned_spans(docs, kb)
        rows: List[Tuple[int, int, int]] = []
        ids: List[str] = []
        scores: List[float] = []
        for i, doc in enumerate(docs):
            given = (
                doc.spans[self.topic_key]
                if self.entities == "gold" and self.topic_key in doc.spans
                else (doc.ents if self.entities == "linker" else [])
            )
            for span in given:
                if span.kb_id_ and span.kb_id_ != NIL:
                    rows.append((i, span.start, span.end))
                    ids.append(span.kb_id_)
                    score = span._.kb_score if self.entities == "linker" and Span.has_extension("kb_score") else None
                    scores.append(1.0 if score is None else float(score))
        found = kb.find(ids) if ids else np.zeros(0, dtype=np.int64)
        keep = found >= 0
        if not keep.any():
            return QASpans.empty()
        rows_kept = np.array(rows, dtype=np.int64)[keep]
        entities = found[keep][:, None]
        features = np.zeros((len(entities), 1, len(CANDIDATE_FEATURES)), dtype=np.float32)
        features[:, 0, 0] = np.log(np.clip(np.array(scores, dtype=np.float32)[keep], 1e-6, 1.0))
        features[:, 0, 1:3] = 1.0
        features[:, 0, 3] = kb.popularities(entities[:, 0])
        return QASpans(rows_kept[:, 0], rows_kept[:, 1], rows_kept[:, 2], entities, features)

    def _learned_spans(self, docs: List[Doc], kb: RefinedKB) -> QASpans:
        """All spans of up to `max_span_width` tokens that have KB candidates, with features."""
        rows, texts = _candidate_spans(docs, self.model.attrs["max_span_width"])
        if not texts:
            return QASpans.empty()
        # each distinct text looked up once: the questions of a batch share their template words
        distinct: Dict[str, int] = {}
        of_text = np.array([distinct.setdefault(text, len(distinct)) for text in texts], dtype=np.int64)
        batch = self.get_candidates(kb, list(distinct), self.n_candidates)
        lengths = batch.lengths[of_text]
        has = np.flatnonzero(lengths > 0)
        if not len(has):
            return QASpans.empty()
        counts = lengths[has]
        k = int(counts.max())
        slot_rows = np.repeat(np.arange(len(has)), counts)
        slots = concatenated_ranges(np.zeros(len(has), np.int64), counts)
        flat = concatenated_ranges(batch.offsets[of_text[has]], counts)
        entities = np.full((len(has), k), -1, dtype=np.int64)
        priors = np.zeros((len(has), k), dtype=np.float32)
        entities[slot_rows, slots] = batch.entities[flat]
        priors[slot_rows, slots] = batch.priors[flat]
        valid = entities >= 0
        features = np.zeros((len(has), k, len(CANDIDATE_FEATURES)), dtype=np.float32)
        features[..., 0] = np.where(valid, np.log(np.clip(priors, 1e-6, 1.0)), 0.0)
        # label matches compared as string hashes: one hash per span and per entity (cached)
        span_texts = [texts[m] for m in has.tolist()]
        exact = np.array([hash_string(text) for text in span_texts], dtype=np.uint64)[slot_rows]
        folded = np.array([hash_string(text.casefold()) for text in span_texts], dtype=np.uint64)[slot_rows]
        labels = self._label_hashes(kb, entities[slot_rows, slots])
        features[slot_rows, slots, 1] = (exact == labels[:, 0]) | (exact == labels[:, 1])
        features[slot_rows, slots, 2] = (folded == labels[:, 2]) | (folded == labels[:, 3])
        features[valid, 3] = kb.popularities(entities[valid])
        kept = rows[has]
        return QASpans(kept[:, 0], kept[:, 1], kept[:, 2], entities, features)

    def _label_hashes(self, kb: RefinedKB, indices: np.ndarray) -> np.ndarray:
        """(E, 4) hashes of the label of each KB entity: as it is, with "_" as
        spaces, and both case-folded (cached until the KB changes)."""
        cache = self._labels
        unique, inverse = np.unique(indices, return_inverse=True)
        for index in unique.tolist():
            if index not in cache:
                label = kb.label(index)
                spaced = label.replace("_", " ")
                cache[index] = tuple(hash_string(v) for v in (label, spaced, label.casefold(), spaced.casefold()))
        table = np.array([cache[index] for index in unique.tolist()], dtype=np.uint64).reshape(-1, 4)
        return table[inverse]

    # -------------------------------------------------------- serialization

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings and the weights under `path` (the KB is saved by its `refined_kb` component)."""
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "model": lambda p: self.model.to_disk(p),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "RefinedQA":
        """Load the settings and the weights saved by `to_disk`."""
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "model": lambda p: self.model.from_bytes(p.read_bytes()),
        }
        util.from_disk(path, deserialize, exclude)
        self._graph = None
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {"cfg": lambda: srsly.json_dumps(self.cfg), "model": lambda: self.model.to_bytes()}
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RefinedQA":
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "model": lambda b: self.model.from_bytes(b),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        self._graph = None
        return self


def find_qa(nlp: Language, name: Optional[str] = None) -> RefinedQA:
    """The `RefinedQA` called `name` of a pipeline (None: the first one); ValueError if there is none."""
    for component_name, component in nlp.pipeline:
        if isinstance(component, RefinedQA) and name in (None, component_name):
            return component
    raise ValueError(
        f"the pipeline has no refined_qa component{f' called {name!r}' if name else ''} (it has: {', '.join(nlp.pipe_names) or 'none'})"
    )


def _candidate_spans(docs: List[Doc], max_width: int) -> Tuple[np.ndarray, List[str]]:
    """The spans of up to `max_width` tokens of the questions that start on
    neither punctuation nor space and end on no space: (S, 3) rows of
    (question, start, end), sorted, and their texts."""
    sizes = np.array([len(doc) for doc in docs], dtype=np.int64)
    nonempty = [doc for doc in docs if len(doc)]
    if not nonempty:
        return np.zeros((0, 3), np.int64), []
    tokens = np.concatenate([doc.to_array([IDX, LENGTH, IS_PUNCT, IS_SPACE]) for doc in nonempty]).astype(np.int64)
    char_start, char_length, punct, space = tokens.T
    owner = np.repeat(np.arange(len(docs)), sizes)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    room = sizes[owner] - position
    can_start = (punct == 0) & (space == 0)
    parts = []
    for width in range(1, max_width + 1):
        first = np.flatnonzero(can_start & (room >= width))
        last = first + width - 1
        first, last = first[space[last] == 0], last[space[last] == 0]
        parts.append(np.stack([owner[first], position[first], position[first] + width, first, last], axis=1))
    spans = np.concatenate(parts)
    spans = spans[np.lexsort((spans[:, 2], spans[:, 1], spans[:, 0]))]
    text_of = [doc.text for doc in docs]
    ends = char_start + char_length
    texts = [
        text_of[d][a:b]
        for d, a, b in zip(spans[:, 0].tolist(), char_start[spans[:, 3]].tolist(), ends[spans[:, 4]].tolist())
    ]
    return spans[:, :3], texts
