"""The `refined_linker` component: ReFinED end-to-end entity linking.

One forward pass per batch detects mentions (or takes given ones), predicts
their fine-grained KB types and scores each mention's candidates by prior,
type agreement, description similarity, popularity and coherence, with a
NIL option. The settings are documented on the factory, `make_refined_linker`.

Design notes (the why; the measured effects are in BENCHMARKS.md):

* The KB belongs to a `refined_kb` component that this one listens to, so
  that several components share one KB (see `knowledge_base.py`).
* Mentions, candidates and their coherence features come from registered
  functions (`mentions`, `get_candidates`, `coherence`), as spaCy's
  `entity_linker` takes its `get_candidates`. The default mentions are the
  BIO head's plus the KB alias matches beside them: the KB knows more names
  than a tagger trained on a few hundred documents finds in other text, and
  the scorer's NIL option, trained on alias matches that are no mentions,
  turns down the spurious ones.
* An untrained model links by the KB alone (prior, popularity, coherence:
  the candidate scorer's initial weights), so that alias mentions and an
  initialized, untrained component are the zero-training linker for a KB of
  one's own entities.
* Training uses the gold mentions (teacher forcing). The typing loss is
  binary cross-entropy averaged over the KB's type inventory, so that its
  pull on the shared encoder does not grow with the number of types. The
  mention-detection loss is a mean over all tokens, most of them outside
  mentions, so it gets a larger default weight than the other losses.
* Description embeddings come from the KB when `kb embed` stored them with
  the current weights, else they are computed on the fly and cached. With
  `train_descriptions` false, training reads them the same way instead of
  encoding every candidate's description at every step, which is what makes
  a transformer description encoder affordable to train on CPU.
"""

import os
from dataclasses import dataclass
from hashlib import sha256
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import filter_spans
from spacy.vocab import Vocab
from thinc.api import Config, Model, NumpyOps, Optimizer, set_dropout_rate

from ..ids import ENTITY_LABEL, NIL
from ..kb.candidates import CandidateGenerator
from ..kb.errors import KBError
from ..kb.store import RefinedKB
from ..labels import DEFAULT_LABEL, DEFAULT_TYPE_LABELS, CoarseLabels
from ..model._torch import wrapped_module
from ..model.architecture import set_output_sizes
from ..model.losses import sigmoid_loss, softmax_loss
from ..model.threads import torch_threads
from ..model.types import Candidates, Logits, Mentions, Origin, RefinedInput, RefinedOutput
from ..util import concatenated_ranges
from .cache import EmbeddingCache
from .coherence import N_COHERENCE, CoherenceFeatures
from .knowledge_base import KBListener
from .mentions import MENTION_SOURCES, MentionSource
from .relations import KBRelations
from .relations import install_extension as install_relations_extension

LOSSES = ("md", "typing", "ed", "description", "relations")
EXTENSIONS = ("kb_score", "kb_candidates", "kb_types")

DEFAULT_MODEL = """
[model]
@architectures = "spacy_refined.RefinedModel.v1"
hidden_width = 128
dropout = 0.1
context_width = 64
feature_dropout = 0.3

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
DEFAULT_CONFIG = {
    "model": DEFAULT_MODEL_CONFIG,
    "kb_component": "*",
    "mentions": MENTION_SOURCES["tagger+aliases"],
    "write_ents": True,
    "alias_share": 0.3,
    "extra_labels": [],
    "get_candidates": {"@misc": "spacy_refined.PriorCandidates.v1", "person_names": True},
    "coherence": {"@misc": "spacy_refined.FactCoherence.v1"},
    "relations": {"@misc": "spacy_refined.KBRelations.v1", "window": 30, "threshold": 0.5},
    "n_candidates": 30,
    "threshold": 0.0,
    "nil_bias": 0.0,
    "keep_nil": True,
    "type_labels": DEFAULT_TYPE_LABELS,
    "default_label": DEFAULT_LABEL,
    "spans_key": "refined",
    "top_candidates": 5,
    "top_types": 5,
    "loss_weights": {"md": 5.0, "typing": 1.0, "ed": 1.0, "description": 1.0, "relations": 1.0},
    "kb_url_template": "https://www.wikidata.org/wiki/{}",
    "cache_size": 100000,
    "train_descriptions": True,
    "cpu_threads": 1,
    "scorer": {"@scorers": "spacy_refined.linking_scorer.v1"},
}


@Language.factory(
    "refined_linker",
    assigns=[
        "doc.ents",
        "token.ent_iob",
        "token.ent_type",
        "token.ent_kb_id",
        "doc.spans",
        "span._.kb_score",
        "span._.kb_candidates",
        "span._.kb_types",
        "doc._.relations",
    ],
    default_config=DEFAULT_CONFIG,
    default_score_weights={
        "el_f": 1.0,
        "el_p": 0.0,
        "el_r": 0.0,
        "el_ed_acc": 0.0,
        "el_md_f": 0.0,
        "el_md_p": 0.0,
        "el_md_r": 0.0,
    },
)
def make_refined_linker(
    nlp: Language,
    name: str,
    model: Model[RefinedInput, RefinedOutput],
    kb_component: str,
    mentions: MentionSource,
    write_ents: bool,
    alias_share: float,
    extra_labels: List[str],
    get_candidates: CandidateGenerator,
    coherence: Optional[CoherenceFeatures],
    relations: Optional[KBRelations],
    n_candidates: int,
    threshold: float,
    nil_bias: float,
    keep_nil: bool,
    type_labels: Dict[str, str],
    default_label: str,
    spans_key: str,
    top_candidates: int,
    top_types: int,
    loss_weights: Dict[str, float],
    kb_url_template: str,
    cache_size: int,
    train_descriptions: bool,
    cpu_threads: int,
    scorer: Optional[Callable],
) -> "RefinedLinker":
    """Construct a `RefinedLinker`: mention detection, typing and
    disambiguation over the KB of a `refined_kb` component.

    model (Model[RefinedInput, RefinedOutput]): The model: an encoder
        (tok2vec or a transformer listener), the heads and a description
        encoder (`spacy_refined.RefinedModel.v1`).
    kb_component (str): The name of the `refined_kb` component whose KB this
        component uses; "*" for any (the pipeline's one).
    mentions (MentionSource): Where the mentions come from
        (`spacy_refined.TaggerMentions.v1`: the BIO head;
        `EntMentions.v1`: `doc.ents`, keeping their labels;
        `SpanGroupMentions.v1`: a span group; `AliasMentions.v1`: KB
        aliases in the text; `CombinedMentions.v1`: several, in order of
        trust). Default: the BIO head's, plus the alias matches that overlap
        none of them. A mention only the aliases proposed that comes out NIL
        is dropped: it was no mention.
    write_ents (bool): Whether the linked mentions go to `doc.ents`
        (replacing the ents they overlap); false: to `doc.spans[spans_key]`
        only (for overlapping given spans).
    alias_share (float): In training, the share of the gold mentions that
        are also alias matches which the scorer sees as proposed by the
        aliases alone, as the mentions a tagger misses in new text are;
        alias matches that are no gold mention are shown as NIL.
    extra_labels (List[str]): Labels (e.g. DATE) that the mention-detection
        head also detects; their mentions are written unlinked (in "ents"
        mode, ents with these labels are left alone).
    get_candidates (Callable[[RefinedKB, Sequence[str], int], CandidateCSR]):
        The candidate generator: a document's mention texts and k give each
        mention's top-k candidates with their priors.
    coherence (Optional[Callable]): How well each candidate fits the
        document's other mentions, by the KB's facts; null gives zeros.
    relations (Optional[KBRelations]): Disambiguation that reasons over the
        KB's facts (`spacy_refined.KBRelations.v1`): a relation head over the
        pairs of mentions at most `window` tokens apart, trained by distant
        supervision from the KB facts between their gold entities, gives
        each candidate a KB score, the expected number of facts that the
        text states and the KB has between it and the other mentions'
        candidates; the relations it finds that the KB confirms between
        linked mentions, from probability `threshold`, go to
        `doc._.relations`. Null turns it off (no relation head: for a KB
        without facts, or an ablation); a model trained with it then scores
        without the KB score.
    n_candidates (int): Candidates per mention (k).
    threshold (float): A link whose probability is below it becomes NIL.
    nil_bias (float): Added to NIL's logit at prediction time (not in
        training): below 0 NIL answers are rarer, above 0 more frequent. For
        text of another domain, choose it on that domain's dev documents
        (`evaluate --nil-bias`).
    keep_nil (bool): Whether NIL mentions stay in `doc.ents`.
    type_labels (Dict[str, str]): KB type ID -> coarse label (the label of a
        linked mention is that of the first listed type its entity has; of a
        NIL mention, the first the typing head gives p >= 0.5).
    default_label (str): The label when no type of `type_labels` applies.
    spans_key (str): The span group that receives all linked mentions, NIL
        included, with their scores in `attrs["scores"]`.
    top_candidates (int): How many (ID, probability) pairs go to
        `span._.kb_candidates`.
    top_types (int): How many (type ID, probability) pairs go to
        `span._.kb_types`.
    loss_weights (Dict[str, float]): The weights of the losses "md" (BIO
        tags), "typing" (the gold entity's KB types), "ed" (softmax over the
        candidates and NIL) and "description" (softmax over the candidates'
        description scores) and "relations" (binary cross-entropy of the
        relation head against the KB facts between the gold entities of
        each mention pair); a missing loss keeps its default weight.
    kb_url_template (str): Where displaCy links an entity ID.
    cache_size (int): Description embeddings computed on the fly that are
        kept (entities).
    train_descriptions (bool): Whether training updates the description
        encoder.
    cpu_threads (int): Torch's intra-op threads during prediction on CPU (0:
        torch's setting). Scale with processes instead
        (`nlp.pipe(..., n_process=N)`); each forked worker uses one thread.
    scorer (Optional[Callable]): The scoring method
        (`spacy_refined.linking_scorer.v1`: EL, ED and MD scores).
    RETURNS (RefinedLinker): The component.
    """
    return RefinedLinker(
        nlp.vocab,
        model,
        name,
        kb_component=kb_component,
        mentions=mentions,
        write_ents=write_ents,
        alias_share=alias_share,
        extra_labels=extra_labels,
        get_candidates=get_candidates,
        coherence=coherence,
        relations=relations,
        n_candidates=n_candidates,
        threshold=threshold,
        nil_bias=nil_bias,
        keep_nil=keep_nil,
        type_labels=type_labels,
        default_label=default_label,
        spans_key=spans_key,
        top_candidates=top_candidates,
        top_types=top_types,
        loss_weights=loss_weights,
        kb_url_template=kb_url_template,
        cache_size=cache_size,
        train_descriptions=train_descriptions,
        cpu_threads=cpu_threads,
        scorer=scorer,
    )


def install_extensions() -> None:
    """Register the span extensions the linker writes (once per process)."""
    for extension in EXTENSIONS:
        if not Span.has_extension(extension):
            Span.set_extension(extension, default=None)
    install_relations_extension()


class KBUrlTemplate(str):
    """A `kb_url_template` for displaCy that gives NIL mentions no link target.

    displaCy formats the template with each entity's `kb_id_`; NIL has no
    page, so its link points nowhere instead of at a missing page.
    """

    def format(self, *args: Any, **kwargs: Any) -> str:
        if args and args[0] in (NIL, ""):
            return "#"
        return super().format(*args, **kwargs)


@dataclass
class _Gold:
    mentions: Mentions  # gold entity mentions (teacher forcing)
    kb_ids: List[str]  # their gold IDs: a KB ID, NIL, or "" (unknown)
    tags: np.ndarray  # gold BIO tag of each token of the batch, -1 where unannotated


class RefinedLinker(KBListener, TrainablePipe):
    """ReFinED entity linking: mention detection, typing and disambiguation over a `RefinedKB`."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[RefinedInput, RefinedOutput],
        name: str,
        *,
        kb_component: str,
        mentions: MentionSource,
        write_ents: bool,
        alias_share: float,
        extra_labels: Iterable[str],
        get_candidates: CandidateGenerator,
        coherence: Optional[CoherenceFeatures],
        relations: Optional[KBRelations],
        n_candidates: int,
        threshold: float,
        nil_bias: float,
        keep_nil: bool,
        type_labels: Dict[str, str],
        default_label: str,
        spans_key: str,
        top_candidates: int,
        top_types: int,
        loss_weights: Dict[str, float],
        kb_url_template: str,
        cache_size: int,
        train_descriptions: bool,
        cpu_threads: int,
        scorer: Optional[Callable],
    ) -> None:
        """Initialize the component; see `make_refined_linker` for the settings."""
        if not 0.0 <= alias_share <= 1.0:
            raise ValueError(f"[{name}] alias_share must be within [0, 1], not {alias_share}")
        if cpu_threads < 0:
            raise ValueError(f"[{name}] cpu_threads must be 0 (torch's setting) or more, not {cpu_threads}")
        unknown = sorted(set(loss_weights) - set(LOSSES))
        if unknown:
            raise ValueError(f"[{name}] unknown loss_weights {unknown}: the losses are {', '.join(LOSSES)}")
        extra_labels = list(extra_labels)
        if ENTITY_LABEL in extra_labels:
            raise ValueError(f"[{name}] {ENTITY_LABEL!r} is the label of entity mentions, it cannot be an extra label")
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.kb_component = kb_component
        self.mentions = mentions
        self.write_ents = write_ents
        self.alias_share = alias_share
        self.get_candidates = get_candidates
        self.coherence = coherence
        self.relations = relations
        self.n_candidates = n_candidates
        self.threshold = threshold
        self.nil_bias = nil_bias
        self.keep_nil = keep_nil
        self.type_labels = dict(type_labels)
        self.default_label = default_label
        self.spans_key = spans_key
        self.top_candidates = top_candidates
        self.top_types = top_types
        defaults = DEFAULT_CONFIG["loss_weights"]
        self.loss_weights = {loss: float(loss_weights.get(loss, defaults[loss])) for loss in LOSSES}
        self.kb_url_template = KBUrlTemplate(kb_url_template)
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"labels": [ENTITY_LABEL] + extra_labels, "type_hash": None, "n_types": None}
        self.train_descriptions = train_descriptions
        self.cpu_threads = cpu_threads
        self._cache = EmbeddingCache(cache_size)
        self._fingerprint: Optional[str] = None
        self._coarse: Optional[CoarseLabels] = None
        self._owner_pid = os.getpid()

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

    def kb_changed(self, kb: RefinedKB) -> None:
        """Refuse a KB whose type inventory is not the one the model was
        trained with, and forget what was derived from the previous KB."""
        expected = self.cfg.get("type_hash")
        if expected is not None and kb.type_hash != expected:
            raise KBError(
                f"[{self.name}] the KB at {kb.path} has type inventory hash {kb.type_hash}, "
                f"but the model was trained with type inventory hash {expected}: its typing head "
                f"needs the KB it was trained with (or one built with the same type inventory)"
            )
        self._coarse = None
        self._reset()

    def _reset(self) -> None:
        """Forget what depends on the weights or the KB."""
        self._cache.clear()
        self._fingerprint = None

    # ------------------------------------------------------------- training

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Size the heads from the KB's type inventory (the KB of the
        `refined_kb` component, initialized before this one), record its hash
        and initialize the model."""
        validate_get_examples(get_examples, "RefinedLinker.initialize")
        self.cfg["type_hash"] = None
        kb = self.require_kb()
        self.cfg.update(type_hash=kb.type_hash, n_types=len(kb.type_ids))
        n_relations = len(kb.relation_ids) if self.relations is not None else 0
        set_output_sizes(self.model, len(self.tags), len(kb.type_ids), N_COHERENCE, n_relations)
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=RefinedInput(docs, None, self._lookup))
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
        self.require_kb()
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        docs = [eg.predicted for eg in examples]
        gold = self._with_alias_matches(docs, self._gold(examples))
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
            for start_char, end_char in _missing_char_ranges(eg.reference):
                span = eg.predicted.char_span(start_char, end_char, alignment_mode="expand")
                if span is not None:
                    tags[offsets[i] + span.start : offsets[i] + span.end] = -1
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

    def _with_alias_matches(self, docs: List[Doc], gold: _Gold) -> _Gold:
        """Show the scorer, besides the gold mentions, what the mention
        source's alias matcher proposes: the matches that overlap no gold
        mention, as NIL, and a share (`alias_share`) of the gold mentions it
        also finds, as proposed by the aliases alone."""
        matcher = self.mentions.alias_matcher
        if matcher is None:
            return gold
        matches = matcher(self.require_kb(), docs)
        if not len(matches):
            return gold
        lengths = np.array([len(doc) for doc in docs], dtype="int64")
        doc_offsets = np.r_[0, np.cumsum(lengths)]
        found = Mentions(matches.doc, matches.start, matches.end, np.zeros(len(matches), "int64"))
        # A match over tokens without annotation (a document without gold
        # mentions, names a partial annotation leaves out) is no NIL example.
        unannotated = np.r_[0, np.cumsum(gold.tags < 0)]
        annotated = unannotated[doc_offsets[found.doc] + found.end] == unannotated[doc_offsets[found.doc] + found.start]
        found = found.subset(annotated)
        spurious = found.subset(~found.overlapping(gold.mentions, doc_offsets))
        origin = gold.mentions.origin.copy()
        matched = set(_span_keys(found))
        also_matched = np.array([key in matched for key in _span_keys(gold.mentions)], dtype=bool)
        origin[also_matched & (np.random.random(len(origin)) < self.alias_share)] = int(Origin.ALIASES)
        spurious.origin[:] = int(Origin.ALIASES)
        mentions = Mentions.concatenate(
            [Mentions(gold.mentions.doc, gold.mentions.start, gold.mentions.end, gold.mentions.label, origin), spurious]
        )
        order = np.lexsort(
            (
                np.r_[gold.mentions.end, spurious.end],
                np.r_[gold.mentions.start, spurious.start],
                np.r_[gold.mentions.doc, spurious.doc],
            )
        )
        kb_ids = gold.kb_ids + [NIL] * len(spurious)
        return _Gold(mentions, [kb_ids[i] for i in order.tolist()], gold.tags)

    def _loss(self, gold: _Gold, output: RefinedOutput) -> Tuple[float, Dict[str, float], Logits]:
        kb = self.require_kb()
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
            parts["description"], gradients.description_logits = softmax_loss(
                ops, output.description_logits, position, weights["description"]
            )
        if output.relation_logits is not None and weights["relations"]:
            targets, has_target = self.relations.targets(
                kb, gold_index, output.candidates.relations.pairs, output.relation_logits.shape[1] // 2
            )
            parts["relations"], gradients.relation_logits = sigmoid_loss(
                ops, output.relation_logits, targets, has_target, weights["relations"]
            )
        if weights["typing"]:
            known = gold_index >= 0
            targets = np.zeros(output.type_logits.shape, dtype="float32")
            targets[known] = kb.type_matrix(gold_index[known])
            parts["typing"], gradients.type_logits = sigmoid_loss(
                ops, output.type_logits, targets, known, weights["typing"]
            )
        return sum(parts.values()), parts, gradients

    def _link_targets(self, kb_ids: List[str], entities: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per mention, from its gold ID (`kb_ids`: a KB ID, NIL or ""): its
        entity's KB index (-1 if not in the KB), its position among the
        candidates `entities` (n_mentions, k) (-1 if absent), and the target
        of the link softmax (that position, k for NIL, -1 when neither: left
        out)."""
        gold_index = self.require_kb().find(kb_ids) if kb_ids else np.zeros(0, dtype="int64")
        is_nil = np.array([kb_id == NIL for kb_id in kb_ids], dtype=bool)
        hits = (entities == gold_index[:, None]) & (gold_index[:, None] >= 0)
        found = hits.any(axis=1)
        position = np.where(found, hits.argmax(axis=1), -1)
        return gold_index, position, np.where(found, position, np.where(is_nil, entities.shape[1], -1))

    def calibrate(
        self, examples: Iterable[Example], *, mentions: str = "gold", batch_size: int = 32, l2: float = 1e-4
    ) -> Dict[str, float]:
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
        self.require_kb()
        heads = wrapped_module(self.model.get_ref("heads"))
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
                batches.append(
                    (
                        features,
                        torch.as_tensor(entities >= 0, device=features.device),
                        torch.as_tensor(target, device=features.device),
                    )
                )
        return heads.fit_scorer(batches, l2)

    # ------------------------------------------------------------ prediction

    def predict(self, docs: Iterable[Doc]) -> RefinedOutput:
        """Detect (or take) the mentions of `docs` and score their candidates."""
        return self._predict(list(docs), None)

    def _predict(self, docs: List[Doc], mentions: Optional[Mentions]) -> RefinedOutput:
        """Score the candidates of `mentions` (None: of the mention source's)."""
        kb = self.require_kb()
        inputs = RefinedInput(
            docs,
            mentions,
            self._lookup,
            propose=lambda docs, tagged: self.mentions(docs, kb, tagged),
            tag=self.mentions.uses_tagger,
        )
        with torch_threads(self.cpu_threads if isinstance(self.model.ops, NumpyOps) else 0, self._owner_pid):
            return self.model.predict(inputs)

    def _lookup(self, docs: List[Doc], mentions: Mentions, is_train: bool) -> Candidates:
        """Candidates of `mentions` from the KB, padded; entity texts when
        training the description encoder, else description embeddings (from
        the KB, the cache or the encoder)."""
        kb = self.require_kb()
        texts = [docs[d][s:e].text for d, s, e in zip(mentions.doc, mentions.start, mentions.end)]
        bounds = np.searchsorted(mentions.doc, np.arange(len(docs) + 1))
        batches, coherence = [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                batch = self.get_candidates(kb, texts[a:b], self.n_candidates)
                batches.append(batch)
                if self.coherence is not None:
                    coherence.append(self.coherence(kb, texts[a:b], batch))
        lengths = np.concatenate([b.lengths for b in batches]) if batches else np.zeros(0, dtype="int64")
        flat_entities = np.concatenate([b.entities for b in batches]) if batches else np.zeros(0, dtype="int64")
        flat_priors = np.concatenate([b.priors for b in batches]) if batches else np.zeros(0, dtype="float32")
        flat_coherence = (
            np.concatenate(coherence) if coherence else np.zeros((len(flat_entities), N_COHERENCE), dtype="float32")
        )
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
        candidates = Candidates(
            entities, priors, features, unique, rows, kb.type_lists(unique), kb.popularities(unique)
        )
        n_relations = self._n_relations()
        if self.relations is not None and n_relations:
            lengths = np.array([len(doc) for doc in docs], dtype="int64")
            candidates.relations = self.relations.inputs(
                kb, mentions, lengths, unique, np.where(entities >= 0, rows, -1), n_relations, not is_train
            )
        if is_train and self.train_descriptions:
            candidates.texts = entity_texts(kb, unique)
        else:
            candidates.vectors = self._entity_vectors(unique)
        return candidates

    def _n_relations(self) -> int:
        """R of the model's relation head (0: none)."""
        heads = self.model.get_ref("heads")
        return heads.get_dim("n_relations") if heads.has_dim("n_relations") is True else 0

    def encode_descriptions(self, texts: List[str]) -> np.ndarray:
        """Description embeddings (float32) of entity texts."""
        encoder = self.model.get_ref("description_encoder")
        return encoder.ops.to_numpy(encoder.predict(texts)).astype("float32")

    def _entity_vectors(self, indices: np.ndarray) -> np.ndarray:
        kb = self.require_kb()
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
            computed = self.encode_descriptions(entity_texts(kb, indices[missing])).astype("float16")
            self._cache.add(indices[missing], computed)
            vectors[missing] = computed
        return vectors

    def set_annotations(self, docs: Iterable[Doc], output: RefinedOutput) -> None:
        """Write the linked mentions to `doc.spans[spans_key]`, the span
        extensions and (`write_ents`) `doc.ents`. A mention that only the KB's
        aliases proposed and that comes out NIL is no mention: it is dropped."""
        docs = list(docs)
        kb = self.require_kb()
        if self._coarse is None:
            self._coarse = CoarseLabels(kb.type_ids, self.type_labels, self.default_label)
        decisions = self._decide(output)
        mentions = output.mentions
        bounds = np.searchsorted(mentions.doc, np.arange(len(docs) + 1))
        extra_bounds = np.searchsorted(output.extra.doc, np.arange(len(docs) + 1))
        by_mention: List[Optional[Span]] = []  # each mention's span, None where dropped
        for i, doc in enumerate(docs):
            linked: List[Span] = []
            scores: List[float] = []
            for m in range(bounds[i], bounds[i + 1]):
                kb_id, score, label, candidates, types = decisions[m]
                origin = mentions.origin[m]
                if origin == Origin.ALIASES and kb_id == NIL:
                    by_mention.append(None)
                    continue
                if origin == Origin.ENTS:
                    label = doc[mentions.start[m]].ent_type_ or label
                span = Span(doc, int(mentions.start[m]), int(mentions.end[m]), label=label, kb_id=kb_id)
                span._.kb_score = score
                span._.kb_candidates = candidates
                span._.kb_types = types
                linked.append(span)
                scores.append(score)
                by_mention.append(span)
            doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=linked, attrs={"scores": scores})
            if not self.write_ents:
                continue
            extra = output.extra
            kept = [span for span in linked if self.keep_nil or span.kb_id_ != NIL]
            kept += [
                Span(doc, int(extra.start[m]), int(extra.end[m]), label=self.extra_labels[extra.label[m] - 1])
                for m in range(extra_bounds[i], extra_bounds[i + 1])
            ]
            kept = filter_spans(kept)
            covered = np.zeros(len(doc) + 1, dtype=bool)
            for span in linked + kept:
                covered[span.start : span.end] = True
            kept += [ent for ent in doc.ents if not covered[ent.start : ent.end].any()]
            doc.ents = sorted(kept, key=lambda span: span.start)
        if self.relations is not None:
            self._annotate_relations(docs, output, by_mention, [decision[0] for decision in decisions])

    def _annotate_relations(
        self, docs: List[Doc], output: RefinedOutput, spans: List[Optional[Span]], kb_ids: List[str]
    ) -> None:
        """`doc._.relations` from the relation head's output on the linked mentions."""
        kb = self.require_kb()
        relations = output.candidates.relations
        pairs = relations.pairs if relations is not None else np.zeros((2, 0), dtype="int64")
        probs = np.zeros((0, 2 * self._n_relations()), dtype="float32")
        if output.relation_logits is not None:
            probs = 1.0 / (1.0 + np.exp(-self.model.ops.to_numpy(output.relation_logits).astype("float32")))
        winners = kb.find(kb_ids) if kb_ids else np.zeros(0, dtype="int64")
        self.relations.annotate(docs, kb, spans, output.mentions, winners, pairs, probs)

    def _decide(
        self, output: RefinedOutput
    ) -> List[Tuple[str, float, str, List[Tuple[str, float]], List[Tuple[str, float]]]]:
        """Per mention: (kb_id, score, coarse label, top candidates, top types)."""
        kb = self.require_kb()
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

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings and the weights under `path` (the KB is saved by its `refined_kb` component)."""
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: self.model.to_disk(p),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "RefinedLinker":
        """Load the settings and the weights saved by `to_disk`."""
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self.model.from_bytes(p.read_bytes()),
        }
        util.from_disk(path, deserialize, exclude)
        self._kb_seen = None
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: self.model.to_bytes(),
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RefinedLinker":
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self.model.from_bytes(b),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        self._kb_seen = None
        return self


def entity_texts(kb: RefinedKB, indices: Iterable[int]) -> List[str]:
    """The texts the description encoder reads for KB entities: "label: description"."""
    return [f"{kb.label(i)}: {kb.description(i)}" for i in indices]


def _missing_char_ranges(doc: Doc) -> List[Tuple[int, int]]:
    """Character ranges of the runs of tokens whose entity annotation is missing (`ent_iob` 0)."""
    missing = doc.to_array("ENT_IOB") == 0
    if not missing.any():
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, missing.astype("int8"), 0]))
    return [(doc[start].idx, doc[end - 1].idx + len(doc[end - 1])) for start, end in edges.reshape(-1, 2).tolist()]


def _span_keys(mentions: Mentions) -> List[Tuple[int, int, int]]:
    return list(zip(mentions.doc.tolist(), mentions.start.tolist(), mentions.end.tolist()))


def find_linker(nlp: Language, name: Optional[str] = None) -> RefinedLinker:
    """The `RefinedLinker` called `name` of a pipeline (None: the first one);
    ValueError if there is none."""
    for component_name, component in nlp.pipeline:
        if isinstance(component, RefinedLinker) and name in (None, component_name):
            return component
    if name is not None:
        raise ValueError(
            f"the pipeline has no refined_linker component called {name!r} (it has: {', '.join(nlp.pipe_names) or 'none'})"
        )
    raise ValueError(f"the pipeline has no refined_linker component (it has: {', '.join(nlp.pipe_names) or 'none'})")


def _top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices of each row's `n` highest scores, best first (torch's
    top-k, which is faster than numpy's argpartition and sort over a KB's
    types: docs/experiments.md)."""
    n = min(n, scores.shape[1])
    return torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), n, dim=1).indices.numpy()
