"""The `refined_linker` component: ReFinED end-to-end entity linking.

Modes (`mode`):

* "detect": the BIO head finds the mentions; they replace `doc.ents`;
* "ents": the spans in `doc.ents` (from an upstream NER or the user) are
  linked, keeping their labels (ents with an `extra_labels` label are left
  alone);
* "spans": the spans in `doc.spans[input_key]` (may overlap) are linked
  (disambiguation only); the result goes to `doc.spans[spans_key]` only.

Every linked mention gets `kb_id_` (an entity ID, or "NIL" when NIL wins or
the best entity's probability is below `threshold`), `span._.kb_score` (the
probability of that answer: the entity's, NIL's, or one minus the best
entity's when it fell below `threshold`), `span._.kb_candidates` (the top
`top_candidates` (ID, probability) pairs) and `span._.kb_types` (the top
`top_types` (type ID, probability) pairs of the typing head).
`nil_bias` is added to NIL's logit before the softmax at prediction time
(not in training): below 0 the linker answers NIL less often, above 0 more
often; the model learns NIL from its training data's NIL mentions, and text
of another domain may need another bias (choose it on that domain's dev
documents, e.g. with `evaluate --nil-bias`).
`doc.spans[spans_key]` holds all linked mentions, NIL included, with their
scores in `attrs["scores"]`; `doc.ents` drops NIL mentions unless
`keep_nil`. In "detect" and "spans" mode the label is a coarse type: the
first type of `type_labels` that the entity has (for NIL: that the typing
head gives p >= 0.5), else `default_label`. Mentions of `extra_labels`
(e.g. DATE) are detected and written unlinked.

Training uses the gold mentions (teacher forcing) with the losses of
`loss_weights`: "md" (BIO tags), "typing" (the gold entity's KB types:
binary cross-entropy averaged over the KB's type inventory, so that its
pull on the shared encoder does not grow with the number of types; summed
over Wikidata's 1,400 types of the benchmark KB it drowned the other losses:
MiniLM, 300 steps: dev mention F1 47, and 93 averaged), "ed" (softmax over the
candidates + NIL; mentions whose gold entity is not among the candidates,
not in the KB or unknown are left out) and "description" (softmax over the
candidates' description scores). The default weights give "md" 5: its loss
is a mean over all tokens, most of them outside mentions (AIDA, tok2vec,
1000 steps, typing summed over types: dev mention F1 72 at weight 1, 85 at
weight 5).
`n_candidates` candidates per mention come from the KB, each with its
prior and its coherence with the document's other mentions (the KB's facts
between candidates, see `coherence.py`).

The KB. `initialize` takes `kb_path`, sizes the typing head from the KB's
type inventory and records its hash; a KB with another inventory is then
refused. When saved, the KB is copied into the pipeline if `kb_copy` is
true, or if it is "auto" (the default) and takes at most 200 MB; otherwise
the pipeline refers to it by its absolute path. `kb_path` in the
component's config opens another KB at load time. Description embeddings
come from the KB when `embed_kb` stored them with the current weights,
else they are computed on the fly and cached (`cache_size` entities).
With `train_descriptions` false the description encoder is not trained:
training reads the embeddings the same way (computed once, cached) instead
of encoding every candidate's description at every step, which is what
makes a transformer description encoder affordable to train on CPU.

Speed. On CPU, prediction runs torch with `cpu_threads` intra-op threads
(default 1; 0 keeps torch's setting): the heads' operations are small, so
thread synchronisation costs more than it brings, several times more on a
busy machine. Scale with processes instead (`nlp.pipe(..., n_process=N)`;
each forked worker runs torch on one thread).
"""
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, NumpyOps, Optimizer, set_dropout_rate

from ..util import concatenated_ranges
from ..ids import ENTITY_LABEL, NIL
from ..kb.errors import KBError
from ..labels import DEFAULT_LABEL, DEFAULT_TYPE_LABELS, CoarseLabels
from ..kb.store import RefinedKB
from ..model.architecture import Candidates, Logits, Mentions, RefinedInput, RefinedOutput, set_output_sizes
from ..model.heads import N_COHERENCE
from ..model.losses import sigmoid_loss, softmax_loss
from .coherence import document_coherence
from .embed import EmbeddingCache
from .scoring import score_linking

MODES = ("detect", "ents", "spans")
LOSSES = ("md", "typing", "ed", "description")
DEFAULT_LOSS_WEIGHTS = {"md": 5.0, "typing": 1.0, "ed": 1.0, "description": 1.0}
KB_COPY_MAX_BYTES = 200 * 2**20

DEFAULT_MODEL = """
[model]
@architectures = "spacy_refined.RefinedModel.v1"
hidden_width = 128
dropout = 0.1
context_width = 64

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true

[model.description_encoder]
@architectures = "spacy_refined.HashDescriptionEncoder.v1"
width = 300
embed_width = 128
n_rows = 20000
max_words = 32
"""
DEFAULT_MODEL_CONFIG = Config().from_str(DEFAULT_MODEL)["model"]
DEFAULT_KB_URL_TEMPLATE = "https://www.wikidata.org/wiki/{}"

for _extension in ("kb_score", "kb_candidates", "kb_types"):
    if not Span.has_extension(_extension):
        Span.set_extension(_extension, default=None)


@Language.factory(
    "refined_linker",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "token.ent_kb_id", "doc.spans",
             "span._.kb_score", "span._.kb_candidates", "span._.kb_types"],
    default_config={
        "model": DEFAULT_MODEL_CONFIG,
        "mode": "detect",
        "extra_labels": [],
        "n_candidates": 30,
        "threshold": 0.0,
        "nil_bias": 0.0,
        "keep_nil": True,
        "type_labels": DEFAULT_TYPE_LABELS,
        "default_label": "MISC",
        "input_key": "mentions",
        "spans_key": "refined",
        "top_candidates": 5,
        "top_types": 5,
        "loss_weights": DEFAULT_LOSS_WEIGHTS,
        "kb_copy": "auto",
        "kb_path": None,
        "kb_url_template": DEFAULT_KB_URL_TEMPLATE,
        "cache_size": 100000,
        "train_descriptions": True,
        "cpu_threads": 1,
        "scorer": {"@scorers": "spacy_refined.linking_scorer.v1"},
    },
    default_score_weights={"el_f": 1.0, "el_p": 0.0, "el_r": 0.0, "ed_acc": 0.0, "md_f": 0.0, "md_p": 0.0, "md_r": 0.0},
)
def make_refined_linker(
    nlp: Language,
    name: str,
    model: Model[RefinedInput, RefinedOutput],
    mode: str,
    extra_labels: List[str],
    n_candidates: int,
    threshold: float,
    nil_bias: float,
    keep_nil: bool,
    type_labels: Dict[str, str],
    default_label: str,
    input_key: str,
    spans_key: str,
    top_candidates: int,
    top_types: int,
    loss_weights: Dict[str, float],
    kb_copy: Union[bool, str],
    kb_path: Optional[str],
    kb_url_template: str,
    cache_size: int,
    train_descriptions: bool,
    cpu_threads: int,
    scorer: Optional[Callable],
) -> "RefinedLinker":
    """Create a `RefinedLinker` (see the module docstring for the settings)."""
    return RefinedLinker(
        nlp.vocab, model, name, mode=mode, extra_labels=extra_labels, n_candidates=n_candidates,
        threshold=threshold, nil_bias=nil_bias, keep_nil=keep_nil, type_labels=type_labels, default_label=default_label,
        input_key=input_key, spans_key=spans_key, top_candidates=top_candidates, top_types=top_types,
        loss_weights=loss_weights, kb_copy=kb_copy, kb_path=kb_path, kb_url_template=kb_url_template,
        cache_size=cache_size, train_descriptions=train_descriptions, cpu_threads=cpu_threads, scorer=scorer,
    )


class KBUrlTemplate(str):
    """A `kb_url_template` for displaCy that gives NIL mentions no link target."""

    def format(self, *args: Any, **kwargs: Any) -> str:
        if args and args[0] in (NIL, ""):
            return "#"
        return super().format(*args, **kwargs)


@dataclass
class _Gold:
    mentions: Mentions  # gold entity mentions (teacher forcing)
    kb_ids: List[str]  # their gold IDs: a KB ID, NIL, or "" (unknown)
    tags: np.ndarray  # gold BIO tag of each token of the batch, -1 where unannotated


class RefinedLinker(TrainablePipe):
    """ReFinED entity linking: mention detection, typing and disambiguation over a `RefinedKB`."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[RefinedInput, RefinedOutput],
        name: str = "refined_linker",
        *,
        mode: str = "detect",
        extra_labels: Iterable[str] = (),
        n_candidates: int = 30,
        threshold: float = 0.0,
        nil_bias: float = 0.0,
        keep_nil: bool = True,
        type_labels: Optional[Dict[str, str]] = None,
        default_label: str = "MISC",
        input_key: str = "mentions",
        spans_key: str = "refined",
        top_candidates: int = 5,
        top_types: int = 5,
        loss_weights: Optional[Dict[str, float]] = None,
        kb_copy: Union[bool, str] = "auto",
        kb_path: Optional[str] = None,
        kb_url_template: str = DEFAULT_KB_URL_TEMPLATE,
        cache_size: int = 100000,
        train_descriptions: bool = True,
        cpu_threads: int = 1,
        scorer: Optional[Callable] = score_linking,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"[{name}] unknown mode {mode!r}: use one of {', '.join(MODES)}")
        if cpu_threads < 0:
            raise ValueError(f"[{name}] cpu_threads must be 0 (torch's setting) or more, not {cpu_threads}")
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - set(LOSSES))
        if unknown:
            raise ValueError(f"[{name}] unknown loss_weights {unknown}: the losses are {', '.join(LOSSES)}")
        if kb_copy not in (True, False, "auto"):
            raise ValueError(f"[{name}] kb_copy must be true, false or \"auto\", not {kb_copy!r}")
        extra_labels = list(extra_labels)
        if ENTITY_LABEL in extra_labels:
            raise ValueError(f"[{name}] {ENTITY_LABEL!r} is the label of entity mentions, it cannot be an extra label")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.mode = mode
        self.n_candidates = n_candidates
        self.threshold = threshold
        self.nil_bias = nil_bias
        self.keep_nil = keep_nil
        self.type_labels = dict(DEFAULT_TYPE_LABELS if type_labels is None else type_labels)
        self.default_label = default_label
        self.input_key = input_key
        self.spans_key = spans_key
        self.top_candidates = top_candidates
        self.top_types = top_types
        self.loss_weights = {loss: float(weights.get(loss, DEFAULT_LOSS_WEIGHTS[loss])) for loss in LOSSES}
        self.kb_copy = kb_copy
        self.kb_url_template = KBUrlTemplate(kb_url_template)
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"labels": [ENTITY_LABEL] + extra_labels, "type_hash": None, "n_types": None, "kb_path": None}
        self.kb: Optional[RefinedKB] = None
        self._kb_path_override = kb_path
        self._cache = EmbeddingCache(cache_size)
        self.train_descriptions = train_descriptions
        self.cpu_threads = cpu_threads
        self._fingerprint: Optional[str] = None
        self._coarse: Optional[CoarseLabels] = None

    # ------------------------------------------------------------- properties

    @property
    def extra_labels(self) -> List[str]:
        return list(self.cfg["labels"][1:])

    @property
    def tags(self) -> List[str]:
        """The BIO tags of the mention detection head."""
        return ["O"] + [f"{prefix}-{label}" for label in self.cfg["labels"] for prefix in "BI"]

    @property
    def labels(self) -> Tuple[str, ...]:
        """The labels this component can write to `doc.ents`."""
        coarse = list(dict.fromkeys([*self.type_labels.values(), self.default_label]))
        return tuple(coarse + self.extra_labels)

    @property
    def entity_width(self) -> int:
        """Width of the description embeddings."""
        return self.model.get_ref("description_encoder").get_dim("nO")

    @property
    def displacy_options(self) -> Dict[str, Any]:
        """Options for `displacy.render(doc, style="ent", options=...)` that link the entities."""
        return {"kb_url_template": self.kb_url_template}

    @property
    def encoder_fingerprint(self) -> str:
        """Hash of the description encoder's weights: KB embeddings computed
        with other weights are not used."""
        if self._fingerprint is None:
            self._fingerprint = sha256(self.model.get_ref("description_encoder").to_bytes()).hexdigest()[:16]
        return self._fingerprint

    # --------------------------------------------------------------------- KB

    def set_kb(self, kb: RefinedKB) -> None:
        """Use `kb`; KBError if its type inventory is not the one the model was trained with."""
        expected = self.cfg.get("type_hash")
        if expected is not None and kb.type_hash != expected:
            raise KBError(
                f"[{self.name}] the KB at {kb.path} has type inventory hash {kb.type_hash}, "
                f"but the model was trained with type inventory hash {expected}: its typing head "
                f"needs the KB it was trained with (or one built with the same type inventory)"
            )
        self.kb = kb
        self._coarse = None
        self._reset()

    def _require_kb(self) -> RefinedKB:
        if self.kb is None:
            raise ValueError(f"[{self.name}] no KB: initialize the pipeline with `kb_path` (nlp.initialize) or load a trained pipeline")
        return self.kb

    def _reset(self) -> None:
        """Forget what depends on the weights or the KB."""
        self._cache.clear()
        self._fingerprint = None

    # ------------------------------------------------------------- training

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None, kb_path: Optional[Union[str, Path]] = None) -> None:
        """Open the KB at `kb_path` (`[initialize.components.NAME] kb_path`),
        size the heads from its type inventory and initialize the model."""
        validate_get_examples(get_examples, "RefinedLinker.initialize")
        path = kb_path if kb_path is not None else self._kb_path_override
        if path is None:
            raise ValueError(
                f"[{self.name}] no KB to initialize with: set `kb_path` in [initialize.components.{self.name}] "
                f"(or pass kb_path to initialize) to a KB built with `python -m spacy_refined kb build`"
            )
        kb = RefinedKB.load(path, self.vocab)
        self.cfg.update(type_hash=kb.type_hash, n_types=len(kb.type_ids), kb_path=str(Path(path).resolve()))
        self.set_kb(kb)
        set_output_sizes(self.model, len(self.tags), len(kb.type_ids))
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs)
        self._reset()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch, with the gold mentions (teacher forcing) for typing and disambiguation."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RefinedLinker.update")
        self._require_kb()
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        gold = self._gold(examples)
        docs = [eg.predicted for eg in examples]
        output, backprop = self.model.begin_update(RefinedInput(docs, gold.mentions, self._lookup))
        loss, parts, d_output = self._loss(gold, output)
        backprop(d_output)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        for part, value in parts.items():
            losses[f"{self.name}_{part}"] = losses.get(f"{self.name}_{part}", 0.0) + value
        return losses

    def get_loss(self, examples: Iterable[Example], output: RefinedOutput) -> Tuple[float, Logits]:
        """The weighted loss of `output` (of the gold mentions of `examples`) and its gradients."""
        loss, _, d_output = self._loss(self._gold(list(examples)), output)
        return loss, d_output

    def finish_update(self, sgd: Optimizer) -> None:
        super().finish_update(sgd)
        if self.train_descriptions:  # else the embeddings stay valid
            self._reset()

    def use_params(self, params: dict) -> Iterator[None]:
        """Use `params` (e.g. averages) within the block; a generator, as spaCy expects."""
        self._reset()
        with self.model.use_params(params):
            yield
        self._reset()

    def _gold(self, examples: List[Example]) -> _Gold:
        """Gold mentions on the predicted tokens (expanded to token boundaries, overlaps dropped)."""
        extra = {label: i + 1 for i, label in enumerate(self.extra_labels)}
        lengths = np.array([len(eg.predicted) for eg in examples], dtype="int64")
        offsets = np.cumsum(lengths) - lengths
        tags = np.full(int(lengths.sum()), -1, dtype="int64")
        rows: List[Tuple[int, int, int, int]] = []
        kb_ids: List[str] = []
        for i, eg in enumerate(examples):
            if not eg.reference.has_annotation("ENT_IOB"):
                continue
            tags[offsets[i] : offsets[i] + lengths[i]] = 0
            end = 0
            for ent in eg.reference.ents:
                span = eg.predicted.char_span(ent.start_char, ent.end_char, alignment_mode="expand")
                if span is None or span.start < end:
                    continue
                end = span.end
                label = extra.get(ent.label_, 0)
                tags[offsets[i] + span.start] = 1 + 2 * label
                tags[offsets[i] + span.start + 1 : offsets[i] + span.end] = 2 + 2 * label
                if label == 0:
                    rows.append((i, span.start, span.end, 0))
                    kb_ids.append(ent.kb_id_)
        order = sorted(range(len(rows)), key=rows.__getitem__)
        return _Gold(Mentions.from_rows([rows[j] for j in order]), [kb_ids[j] for j in order], tags)

    def _loss(self, gold: _Gold, output: RefinedOutput) -> Tuple[float, Dict[str, float], Logits]:
        kb = self._require_kb()
        ops = self.model.ops
        weights = self.loss_weights
        gradients = Logits()
        parts: Dict[str, float] = {}
        if output.tag_logits is not None and weights["md"]:
            parts["md"], gradients.tag_logits = softmax_loss(ops, output.tag_logits, gold.tags, weights["md"])
        gold_index, position, link_target = self._link_targets(gold.kb_ids, output.candidates.entities)
        if weights["ed"]:
            parts["ed"], gradients.link_logits = softmax_loss(ops, output.link_logits, link_target, weights["ed"])
        if weights["description"]:
            parts["description"], gradients.description_logits = softmax_loss(ops, output.description_logits, position, weights["description"])
        if weights["typing"]:
            known = gold_index >= 0
            targets = np.zeros(output.type_logits.shape, dtype="float32")
            targets[known] = kb.type_matrix(gold_index[known])
            parts["typing"], gradients.type_logits = sigmoid_loss(ops, output.type_logits, targets, known, weights["typing"])
        return sum(parts.values()), parts, gradients

    def _link_targets(self, kb_ids: List[str], entities: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per mention, from its gold ID (`kb_ids`: a KB ID, NIL or ""): its
        entity's KB index (-1 if not in the KB), its position among the
        candidates `entities` (n_mentions, k) (-1 if absent), and the target
        of the link softmax (that position, k for NIL, -1 when neither: left
        out)."""
        gold_index = self._require_kb().find(kb_ids) if kb_ids else np.zeros(0, dtype="int64")
        is_nil = np.array([kb_id == NIL for kb_id in kb_ids], dtype=bool)
        hits = (entities == gold_index[:, None]) & (gold_index[:, None] >= 0)
        found = hits.any(axis=1)
        position = np.where(found, hits.argmax(axis=1), -1)
        return gold_index, position, np.where(found, position, np.where(is_nil, entities.shape[1], -1))

    def calibrate(self, examples: Iterable[Example], *, mentions: str = "gold", batch_size: int = 32, l2: float = 1e-4) -> Dict[str, float]:
        """Refit the candidate scorer's linear layer (the weights of prior,
        typing, description and coherence, and the bias against NIL) on
        held-out `examples`, the rest of the model fixed. Training fits those
        weights on documents that the encoder has learnt, where context looks
        more reliable than it is on new text; a dev set gives honest
        features. `mentions`: "gold" links the gold mentions; "predicted"
        the mentions the component links itself (detected, or its given
        ents or spans), NIL being the answer for those that match no gold
        span, so that the bias against NIL also learns to turn down spurious
        mentions. Returns the mean loss and accuracy (NIL included) on those
        mentions before and after."""
        if mentions not in ("gold", "predicted"):
            raise ValueError(f"[{self.name}] calibrate on 'gold' or 'predicted' mentions, not {mentions!r}")
        self._require_kb()
        heads = self.model.get_ref("heads").shims[0]._model
        batches = []
        with heads.recording() as records:
            for chunk in util.minibatch(examples, size=batch_size):
                gold = self._gold(chunk)
                docs = [eg.predicted for eg in chunk]
                records.clear()
                if mentions == "gold":
                    output = self._predict(docs, gold.mentions) if len(gold.mentions) else None
                    kb_ids = gold.kb_ids
                else:
                    output = self.predict(docs)
                    answers = dict(zip(_span_keys(gold.mentions), gold.kb_ids))
                    kb_ids = [answers.get(key, NIL) for key in _span_keys(output.mentions)]
                if output is None or not len(output.mentions):
                    continue
                entities = output.candidates.entities
                features = records[-1]
                target = self._link_targets(kb_ids, entities)[2]
                batches.append((features, torch.as_tensor(entities >= 0, device=features.device), torch.as_tensor(target, device=features.device)))
        return heads.fit_scorer(batches, l2)

    # ------------------------------------------------------------ prediction

    def predict(self, docs: Iterable[Doc]) -> RefinedOutput:
        """Detect (or take) the mentions of `docs` and score their candidates."""
        docs = list(docs)
        return self._predict(docs, self._given_mentions(docs))

    def _predict(self, docs: List[Doc], mentions: Optional[Mentions]) -> RefinedOutput:
        self._require_kb()
        with _torch_threads(self.cpu_threads if isinstance(self.model.ops, NumpyOps) else 0):
            return self.model.predict(RefinedInput(docs, mentions, self._lookup))

    def _given_mentions(self, docs: List[Doc]) -> Optional[Mentions]:
        if self.mode == "detect":
            return None
        extra = set(self.extra_labels)
        rows = []
        for i, doc in enumerate(docs):
            spans = doc.ents if self.mode == "ents" else doc.spans.get(self.input_key, [])
            rows.extend((i, span.start, span.end, 0) for span in spans if span.label_ not in extra)
        return Mentions.from_rows(rows)

    def _lookup(self, docs: List[Doc], mentions: Mentions, is_train: bool) -> Candidates:
        """Candidates of `mentions` from the KB, padded; entity texts when
        training the description encoder, else description embeddings (from
        the KB, the cache or the encoder)."""
        kb = self._require_kb()
        texts = [docs[d][s:e].text for d, s, e in zip(mentions.doc, mentions.start, mentions.end)]
        bounds = np.searchsorted(mentions.doc, np.arange(len(docs) + 1))
        batches, coherence = [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                batch = kb.document_candidates(texts[a:b], self.n_candidates)
                batches.append(batch)
                coherence.append(document_coherence(kb, texts[a:b], batch.lengths, batch.entities, batch.priors))
        lengths = np.concatenate([b.lengths for b in batches]) if batches else np.zeros(0, dtype="int64")
        flat_entities = np.concatenate([b.entities for b in batches]) if batches else np.zeros(0, dtype="int64")
        flat_priors = np.concatenate([b.priors for b in batches]) if batches else np.zeros(0, dtype="float32")
        flat_coherence = np.concatenate(coherence) if coherence else np.zeros((0, N_COHERENCE), dtype="float32")
        k = max(1, int(lengths.max(initial=0)))
        mention_of = np.repeat(np.arange(len(mentions)), lengths)
        slot = concatenated_ranges(np.zeros(len(lengths)), lengths)
        entities = np.full((len(mentions), k), -1, dtype="int64")
        priors = np.zeros((len(mentions), k), dtype="float32")
        features = np.zeros((len(mentions), k, N_COHERENCE), dtype="float32")
        rows = np.zeros((len(mentions), k), dtype="int64")
        unique, inverse = np.unique(flat_entities, return_inverse=True)
        if not len(unique):  # no mention has a candidate: one masked row keeps the entity table non-empty
            unique = np.zeros(1, dtype="int64")
        entities[mention_of, slot] = flat_entities
        priors[mention_of, slot] = flat_priors
        features[mention_of, slot] = flat_coherence
        rows[mention_of, slot] = inverse
        candidates = Candidates(entities, priors, features, unique, rows, kb.type_lists(unique), kb.popularities(unique))
        if is_train and self.train_descriptions:
            candidates.texts = self.entity_texts(unique)
        else:
            candidates.vectors = self._entity_vectors(unique)
        return candidates

    def entity_texts(self, indices: Iterable[int]) -> List[str]:
        """The texts the description encoder reads: "label: description"."""
        kb = self._require_kb()
        return [f"{kb.label(i)}: {kb.description(i)}" for i in indices]

    def encode_descriptions(self, texts: List[str]) -> np.ndarray:
        """Description embeddings (float32) of entity texts."""
        encoder = self.model.get_ref("description_encoder")
        return encoder.ops.to_numpy(encoder.predict(texts)).astype("float32")

    def _entity_vectors(self, indices: np.ndarray) -> np.ndarray:
        kb = self._require_kb()
        vectors = np.zeros((len(indices), self.entity_width), dtype="float32")
        have = np.zeros(len(indices), dtype=bool)
        if (kb.manifest.get("embeddings") or {}).get("fingerprint") == self.encoder_fingerprint:
            for segment in kb.segments:
                if segment.embeddings is None:
                    continue
                inside = (indices >= segment.start) & (indices < segment.end)
                vectors[inside] = segment.embeddings[indices[inside] - segment.start]
                have |= inside
        todo = np.flatnonzero(~have)
        cached, hit = self._cache.get(indices[todo])
        if hit.any():
            vectors[todo[hit]] = cached
        missing = todo[~hit]
        if len(missing):
            computed = self.encode_descriptions(self.entity_texts(indices[missing])).astype("float16")
            self._cache.add(indices[missing], computed)
            vectors[missing] = computed
        return vectors

    def set_annotations(self, docs: Iterable[Doc], output: RefinedOutput) -> None:
        """Write the linked mentions to `doc.ents` (modes "detect", "ents"),
        `doc.spans[spans_key]` and the span extensions."""
        docs = list(docs)
        kb = self._require_kb()
        if self._coarse is None:
            self._coarse = CoarseLabels(kb.type_ids, self.type_labels, self.default_label)
        decisions = self._decide(output)
        mentions = output.mentions
        bounds = np.searchsorted(mentions.doc, np.arange(len(docs) + 1))
        extra_bounds = np.searchsorted(output.extra.doc, np.arange(len(docs) + 1))
        for i, doc in enumerate(docs):
            linked: List[Span] = []
            scores: List[float] = []
            for m in range(bounds[i], bounds[i + 1]):
                kb_id, score, label, candidates, types = decisions[m]
                if self.mode == "ents":
                    label = doc[mentions.start[m]].ent_type_ or label
                span = Span(doc, int(mentions.start[m]), int(mentions.end[m]), label=label, kb_id=kb_id)
                span._.kb_score = score
                span._.kb_candidates = candidates
                span._.kb_types = types
                linked.append(span)
                scores.append(score)
            doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=linked, attrs={"scores": scores})
            if self.mode == "spans":
                continue
            kept = [span for span in linked if self.keep_nil or span.kb_id_ != NIL]
            if self.mode == "detect":
                extra = output.extra
                kept += [
                    Span(doc, int(extra.start[m]), int(extra.end[m]), label=self.extra_labels[extra.label[m] - 1])
                    for m in range(extra_bounds[i], extra_bounds[i + 1])
                ]
            else:
                linked_starts = {span.start for span in linked}
                kept += [ent for ent in doc.ents if ent.start not in linked_starts]
            doc.ents = sorted(kept, key=lambda span: span.start)

    def _decide(self, output: RefinedOutput) -> List[Tuple[str, float, str, List[Tuple[str, float]], List[Tuple[str, float]]]]:
        """Per mention: (kb_id, score, coarse label, top candidates, top types)."""
        kb = self._require_kb()
        ops = self.model.ops
        n = len(output.mentions)
        if not n:
            return []
        logits = output.link_logits.copy()
        logits[:, -1] += self.nil_bias
        probs = ops.to_numpy(ops.softmax(logits, axis=1))
        type_probs = 1.0 / (1.0 + np.exp(-ops.to_numpy(output.type_logits)))
        entities = output.candidates.entities
        k = entities.shape[1]
        candidate_probs = np.where(entities >= 0, probs[:, :k], -1.0)
        best = candidate_probs.argmax(axis=1)
        p_best = candidate_probs[np.arange(n), best]
        p_nil = probs[:, k]
        nil_wins = p_nil >= p_best
        linked = ~nil_wins & (p_best >= self.threshold)
        scores = np.where(linked, p_best, np.where(nil_wins, p_nil, 1.0 - p_best))
        winners = entities[np.arange(n), best]
        labels = np.empty(n, dtype=object)
        if linked.any():
            labels[linked] = self._coarse.from_types(kb.type_matrix(winners[linked]))
        if (~linked).any():
            labels[~linked] = self._coarse.from_probabilities(type_probs[~linked])
        n_top = min(self.top_candidates, k)
        top = np.argsort(-candidate_probs, axis=1, kind="stable")[:, :n_top]
        top_types = _top_columns(type_probs, self.top_types)
        top_entities = np.take_along_axis(entities, top, axis=1)
        top_probs = np.take_along_axis(probs[:, :k], top, axis=1).tolist()
        shown = top_entities >= 0
        ids = iter(kb.entity_ids(np.concatenate([top_entities[shown], winners[linked]])))
        top_ids = [[next(ids) for _ in range(count)] for count in shown.sum(axis=1).tolist()]
        winner_ids = [next(ids) if is_linked else NIL for is_linked in linked.tolist()]
        top_type_probs = np.take_along_axis(type_probs, top_types, axis=1).tolist()
        type_ids = kb.type_ids
        top_type_ids = [[type_ids[t] for t in row] for row in top_types.tolist()]
        return [
            (winner_id, score, label, list(zip(ids_, probs_)), list(zip(types_, type_probs_)))
            for winner_id, score, label, ids_, probs_, types_, type_probs_ in zip(
                winner_ids, scores.tolist(), labels.tolist(), top_ids, top_probs, top_type_ids, top_type_probs
            )
        ]

    # -------------------------------------------------------- serialization

    def _copy_kb(self) -> bool:
        kb = self._require_kb()
        if self.kb_copy == "auto":
            return sum(f.stat().st_size for f in kb.path.rglob("*") if f.is_file()) <= KB_COPY_MAX_BYTES
        return bool(self.kb_copy)

    def _kb_cfg(self) -> Dict[str, Any]:
        return {**self.cfg, "kb_path": str(self.kb.path.resolve()) if self.kb is not None else self.cfg["kb_path"]}

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the config, the weights and (if `kb_copy`) the KB under `path`."""
        path = Path(path)
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self._kb_cfg()),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: self.model.to_disk(p),
        }
        if self.kb is not None and self._copy_kb():
            serialize["kb"] = lambda p: self.kb.to_disk(p)
        elif (path / "kb").exists() and (self.kb is None or self.kb.path.resolve() != (path / "kb").resolve()):
            shutil.rmtree(path / "kb")  # a KB copied by an earlier save
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "RefinedLinker":
        """Load a saved component; its KB from the pipeline, or from `kb_path`."""
        path = Path(path)
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self.model.from_bytes(p.read_bytes()),
        }
        util.from_disk(path, deserialize, exclude)
        if "kb" not in exclude:
            copied = path / "kb"
            self._load_kb(copied if copied.exists() else None)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self._kb_cfg()),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: self.model.to_bytes(),
            "kb": lambda: self.kb.to_bytes() if self.kb is not None and self._copy_kb() else b"",
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RefinedLinker":
        kb_bytes: List[bytes] = []
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self.model.from_bytes(b),
            "kb": kb_bytes.append,
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        if "kb" not in exclude:
            if kb_bytes and kb_bytes[0] and self._kb_path_override is None:
                self.set_kb(RefinedKB(self.vocab).from_bytes(kb_bytes[0]))
            else:
                self._load_kb(None)
        return self

    def _load_kb(self, copied: Optional[Path]) -> None:
        """Open the KB: `kb_path` of the config, else the copy, else the recorded path
        (none for a component saved before initialization)."""
        path = self._kb_path_override or copied or self.cfg.get("kb_path")
        if path is None:
            return
        if not Path(path).exists():
            raise KBError(
                f"[{self.name}] the KB at {path} does not exist: set `kb_path` in [components.{self.name}] "
                f"to a copy of the KB the pipeline was trained with"
            )
        self.set_kb(RefinedKB.load(path, self.vocab))


_in_forked_worker = False


def _one_thread_after_fork() -> None:
    """`nlp.pipe(n_process=N)` forks its workers (on Linux), and torch's
    OpenMP threads do not survive a fork: the child's first multi-threaded
    operation waits for them forever. The N processes are the parallelism,
    so each keeps torch on one thread."""
    global _in_forked_worker
    _in_forked_worker = True
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_one_thread_after_fork)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch with `n` intra-op threads inside the block (0: leave the
    setting; a forked worker stays on one, see `_one_thread_after_fork`)."""
    previous = torch.get_num_threads()
    if n <= 0 or n == previous or _in_forked_worker:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _span_keys(mentions: Mentions) -> List[Tuple[int, int, int]]:
    return list(zip(mentions.doc.tolist(), mentions.start.tolist(), mentions.end.tolist()))


def find_linker(nlp: Language) -> RefinedLinker:
    """The (first) `RefinedLinker` of a pipeline; ValueError if there is none."""
    for _, component in nlp.pipeline:
        if isinstance(component, RefinedLinker):
            return component
    raise ValueError(f"the pipeline has no refined_linker component (it has: {', '.join(nlp.pipe_names) or 'none'})")


def _top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices of each row's `n` highest scores, best first (torch's
    top-k: ten times faster than numpy's argpartition over a KB's types)."""
    n = min(n, scores.shape[1])
    return torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), n, dim=1).indices.numpy()
