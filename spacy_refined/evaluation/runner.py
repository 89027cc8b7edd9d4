"""Run a pipeline over EL documents and score it (see `metrics`)."""

import os
import platform
import resource
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import spacy
from spacy.language import Language
from spacy.pipeline import EntityLinker
from spacy.tokens import Doc, Span
from thinc.api import get_current_ops

from ..ids import ENTITY_LABEL, NIL, UNKNOWN, entity_status
from ..kb.candidates import person_name_candidates
from ..kb.store import RefinedKB
from ..labels import DEFAULT_LABEL, CoarseLabels
from ..pipeline.linker import find_linker
from ..pipeline.mentions import MENTION_SOURCES
from ..training.corpus import coarse_labels
from .metrics import RECALL_AT, DocumentResult, Mention, predicted_mentions, score

DETECTORS = ("ner", "beam_ner", "entity_ruler", "span_ruler")  # factories that write doc.ents
MIN_TIMED_SECONDS = 2.0  # a dataset faster than this is timed again, up to MAX_TIMED_PASSES passes
MAX_TIMED_PASSES = 10
NOT_IN_KB_TYPE = "not in KB"


def load_pipeline(
    path: Union[str, Path], gold_spans: bool, nil_bias: Optional[float] = None, mention_source: Optional[str] = None
) -> Language:
    """Load a pipeline for evaluation. The settings are overridden in the
    config of every `refined_linker` (found by factory: before loading).

    path (Union[str, Path]): The pipeline directory.
    gold_spans (bool): The `refined_linker`s link the given `doc.ents`
        (`EntMentions.v1`), and the components that detect entities are disabled.
    nil_bias (Optional[float]): Replaces the `refined_linker`s' `nil_bias`.
    mention_source (Optional[str]): Replaces their mention source by one of
        `MENTION_SOURCES` ("tagger", "aliases", "tagger+aliases").
    RETURNS (Language): The pipeline.
    """
    if mention_source is not None and mention_source not in MENTION_SOURCES:
        raise ValueError(f"unknown mention source {mention_source!r}: choose one of {', '.join(MENTION_SOURCES)}")
    if mention_source is not None and gold_spans:
        raise ValueError("gold spans are the mentions: choose a mention source or gold spans, not both")
    path = Path(path)
    if not (path / "config.cfg").exists():
        raise FileNotFoundError(f"{path} is not a spaCy pipeline (no config.cfg)")
    config = spacy.util.load_config(path / "config.cfg")
    components = config["components"]
    overrides: Dict[str, Any] = {}
    disable: List[str] = []
    for name, settings in components.items():
        if settings.get("factory") == "refined_linker":
            if gold_spans:
                overrides[f"components.{name}.mentions"] = {"@misc": "spacy_refined.EntMentions.v1", "skip_labels": []}
            if mention_source is not None:
                overrides[f"components.{name}.mentions"] = MENTION_SOURCES[mention_source]
            if nil_bias is not None:
                overrides[f"components.{name}.nil_bias"] = nil_bias
        elif gold_spans and settings.get("factory") in DETECTORS:
            disable.append(name)
    return spacy.load(path, config=overrides, disable=disable)


def machine_description() -> str:
    """This machine's CPU model, cores and memory, and the GPU where spaCy runs on one."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or "CPU",
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ops = get_current_ops()
    if ops.device_type == "gpu":
        import torch

        return f"{torch.cuda.get_device_name(ops.device_id)} GPU, {cpu}, {os.cpu_count()} cores, {memory:.0f} GB"
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GB, CPU only"


def pipeline_kb(nlp: Language) -> Optional[RefinedKB]:
    """The KB that a pipeline links with: its `refined_linker`'s, else the
    RefinedKB of a spaCy `entity_linker` (None if neither has one).

    nlp (Language): The pipeline.
    RETURNS (Optional[RefinedKB]): The KB.
    """
    try:
        return find_linker(nlp).kb
    except ValueError:  # no refined_linker
        kbs = [component.kb for _, component in nlp.pipeline if isinstance(component, EntityLinker)]
        return next((kb for kb in kbs if isinstance(kb, RefinedKB) and kb.path is not None), None)


def gold_mentions(record: Dict[str, Any], kb: Optional[RefinedKB], coarse: Optional[CoarseLabels]) -> List[Mention]:
    """A record's gold mentions.

    record (Dict[str, Any]): An EL record.
    kb (Optional[RefinedKB]): The KB that types the entities.
    coarse (Optional[CoarseLabels]): The coarse labels of the KB's types.
    RETURNS (List[Mention]): The mentions; their type is the label's
        `type`/`label`, else (given a KB) the coarse label of the entity or
        NOT_IN_KB_TYPE, else `ids.ENTITY_LABEL`.
    """
    mentions = [
        Mention(
            int(label["span"][0]),
            int(label["span"][1]),
            entity_status(label.get("entity_id")),
            label.get("type") or label.get("label") or "",
        )
        for label in record.get("labels") or []
    ]
    untyped = [m for m in mentions if not m.type]
    if kb is not None and coarse is not None:
        for m, label in zip(untyped, coarse.for_ids(kb, [m.entity_id for m in untyped], unknown=NOT_IN_KB_TYPE)):
            m.type = label
    for m in untyped:
        m.type = m.type or ENTITY_LABEL
    return mentions


def set_gold_spans(doc: Doc, mentions: Sequence[Mention]) -> Dict[Tuple[int, int], Tuple[int, int]]:
    """Put the gold mentions into `doc.ents` (expanded to tokens; a mention
    overlapping an earlier one is left out); returns token-aligned span ->
    gold span."""
    ents: List[Span] = []
    aligned: Dict[Tuple[int, int], Tuple[int, int]] = {}
    for m in sorted(mentions, key=lambda m: m.span):
        span = doc.char_span(m.start, m.end, alignment_mode="expand")
        if span is None or (ents and span.start < ents[-1].end):
            continue
        ents.append(Span(doc, span.start, span.end, label=m.type if m.type != NOT_IN_KB_TYPE else DEFAULT_LABEL))
        aligned[(span.start_char, span.end_char)] = m.span
    doc.ents = ents
    return aligned


def _realigned(mention: Mention, aligned: Dict[Tuple[int, int], Tuple[int, int]]) -> Mention:
    """`mention` on the gold span that its token-aligned span came from (see `set_gold_spans`)."""
    start, end = aligned.get(mention.span, mention.span)
    return replace(mention, start=start, end=end)


def linked_entities(records: Iterable[Dict[str, Any]]) -> Set[str]:
    """The entity IDs that EL records link to (NIL and unknown IDs left out)."""
    ids = {entity_status(label.get("entity_id")) for record in records for label in record["labels"]}
    return ids - {NIL, UNKNOWN}


def candidate_ranks(kb: RefinedKB, text: str, mentions: Sequence[Mention], k: int) -> List[int]:
    """Rank of each mention's gold entity among the KB's top-k candidates for
    its text (in document order, as the linkers ask), -1 if absent."""
    if not mentions:
        return []
    batch = person_name_candidates(kb, [text[m.start : m.end] for m in mentions], k)
    gold = kb.find([m.entity_id for m in mentions])
    lengths = batch.lengths
    owner = np.repeat(np.arange(len(mentions)), lengths)
    slot = np.arange(len(batch.entities)) - np.repeat(batch.offsets[:-1], lengths)
    hit = (batch.entities == gold[owner]) & (gold[owner] >= 0)
    ranks = np.full(len(mentions), -1, dtype=np.int64)
    ranks[owner[hit]] = slot[hit]
    return ranks.tolist()


def timed_passes(nlp: Language, docs: List[Doc], batch_size: int) -> Tuple[List[Doc], List[float], float]:
    """Process copies of `docs` with `nlp.pipe`, timing each pass over all of
    them: first an untimed warm-up on the first batch (first-touch memory and
    lazy caches are not throughput, and would dominate a small dataset), then
    timed passes until they add up to MIN_TIMED_SECONDS (at least one, at
    most MAX_TIMED_PASSES), so that the median pass of a small dataset is not
    one sample of a busy machine. Returns the first pass's docs, each pass's
    seconds and the warm-up's."""
    started = time.perf_counter()
    list(nlp.pipe([doc.copy() for doc in docs[:batch_size]], batch_size=batch_size))
    warm_up_seconds = time.perf_counter() - started
    processed: List[Doc] = []
    timings: List[float] = []
    while not timings or (sum(timings) < MIN_TIMED_SECONDS and len(timings) < MAX_TIMED_PASSES):
        copies = [doc.copy() for doc in docs]
        started = time.perf_counter()
        output = list(nlp.pipe(copies, batch_size=batch_size))
        timings.append(time.perf_counter() - started)
        processed = processed or output
    return processed, timings, warm_up_seconds


def evaluate(
    pipeline: Union[str, Path],
    records: Sequence[Dict[str, Any]],
    *,
    gold_spans: bool = False,
    kb_path: Optional[Union[str, Path]] = None,
    batch_size: int = 32,
    recall_at: Sequence[int] = RECALL_AT,
    nil_bias: Optional[float] = None,
    mention_source: Optional[str] = None,
    training_entities: Optional[Set[str]] = None,
) -> Dict[str, Any]:
    """Run `pipeline` over `records` and score its links (see `metrics.score`),
    with speed (docs/s, tokens/s over the pipeline's processing only, see
    `timed_passes`) and the process's peak memory. `nil_bias`, `mention_source`: see `load_pipeline`;
    `training_entities`: see `metrics.score`."""
    started = time.perf_counter()
    nlp = load_pipeline(pipeline, gold_spans, nil_bias, mention_source)
    load_seconds = time.perf_counter() - started
    kb = RefinedKB.load(kb_path, nlp.vocab) if kb_path is not None else pipeline_kb(nlp)
    coarse = coarse_labels(nlp, kb) if kb is not None else None
    golds = [gold_mentions(record, kb, coarse) for record in records]
    docs = [nlp.make_doc(record["text"]) for record in records]
    alignments = [set_gold_spans(doc, mentions) if gold_spans else {} for doc, mentions in zip(docs, golds)]
    processed, timings, warm_up_seconds = timed_passes(nlp, docs, batch_size)
    seconds = float(np.median(timings))
    results = []
    for record, doc, mentions, aligned in zip(records, processed, golds, alignments):
        predicted = [_realigned(m, aligned) for m in predicted_mentions(doc.ents)]
        linked = [m for m in mentions if m.entity_id not in (NIL, UNKNOWN)]
        in_kb = ranks = None
        if kb is not None:
            found = dict(zip((m.span for m in linked), (kb.find([m.entity_id for m in linked]) >= 0).tolist()))
            in_kb = [found.get(m.span, False) for m in mentions]
            found_ranks = dict(
                zip((m.span for m in linked), candidate_ranks(kb, record["text"], linked, max(recall_at)))
            )
            ranks = [found_ranks.get(m.span, -1) for m in mentions]
        results.append(DocumentResult(str(record.get("id", len(results))), mentions, predicted, len(doc), in_kb, ranks))
    metrics = score(results, recall_at, training_entities)
    n_tokens = sum(len(doc) for doc in processed)
    metrics["speed"] = {
        "documents": len(processed),
        "tokens": n_tokens,
        "seconds": seconds,
        "docs_per_s": len(processed) / seconds if seconds else 0.0,
        "tokens_per_s": n_tokens / seconds if seconds else 0.0,
        "timed_passes": len(timings),
        "load_seconds": load_seconds,
        "warm_up_seconds": warm_up_seconds,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    ops = get_current_ops()
    metrics["machine"] = machine_description()
    metrics["date"] = date.today().isoformat()
    metrics["settings"] = {
        "pipeline": str(pipeline),
        "gpu_id": ops.device_id if ops.device_type == "gpu" else -1,
        "gemm": None if ops.device_type == "gpu" else ("blis" if getattr(ops, "use_blis", False) else "numpy"),
        "components": nlp.pipe_names,
        "gold_spans": gold_spans,
        "kb": str(kb.path) if kb is not None else None,
        "kb_option": str(kb_path) if kb_path is not None else None,
        "batch_size": batch_size,
        "nil_bias": nil_bias,
        "mentions": mention_source,
    }
    return metrics
