"""Refit a trained linker's candidate scorer on dev documents.

Training fits the scorer's weights (prior, typing, description, popularity,
coherence, and the bias against NIL) on documents the encoder has learnt,
where the context features look more reliable than they are on new text.
Refitting those few weights on held-out documents, the rest of the model
fixed, gives them honest evidence (see BENCHMARKS.md for what it gains). Use
the dev set of the domain the pipeline will link: it also sets how often NIL
wins there.
"""

from typing import Any, Dict, Iterable

from spacy.language import Language
from spacy.training import Example

from ..pipeline.linker import find_linker
from .corpus import docs_from_jsonl


def calibrate_pipeline(
    nlp: Language, records: Iterable[Dict[str, Any]], *, mentions: str = "gold", batch_size: int = 32, l2: float = 1e-4
) -> Dict[str, float]:
    """Refit the scorer of the pipeline's `refined_linker` on EL records, in
    place; the components before the linker (e.g. a shared transformer, an
    NER) run on the texts first.

    nlp (Language): The pipeline (its first `refined_linker` is refit).
    records (Iterable[Dict[str, Any]]): EL records with gold links (see `docs_from_jsonl`).
    mentions (str): "gold" or "predicted" (see `RefinedLinker.calibrate`).
    batch_size (int): Documents per batch.
    l2 (float): Pull of the weights towards the trained ones.
    RETURNS (Dict[str, float]): The loss and accuracy before and after.
    """
    linker = find_linker(nlp)
    references = list(docs_from_jsonl(nlp, records))
    upstream = nlp.pipe_names[: nlp.pipe_names.index(linker.name)]
    with nlp.select_pipes(enable=upstream):
        predicted = nlp.pipe((nlp.make_doc(doc.text) for doc in references), batch_size=batch_size)
        return linker.calibrate(
            (Example(doc, reference) for doc, reference in zip(predicted, references)),
            mentions=mentions,
            batch_size=batch_size,
            l2=l2,
        )
