"""Entity linking scores for `spacy train` and `spacy evaluate`.

The scores are those of the `evaluate` command (`evaluation/metrics.py`),
computed by the same code on the mentions of `doc.ents` of the reference and
the predicted docs, and prefixed with `el_` so that they can sit beside the
scores of other components:

* el_p / el_r / el_f: micro precision, recall and F1 of links ("nil_fp"): a
  predicted link is correct when a gold mention has the same span and the
  same ID. Gold mentions linked to NIL are left out of the gold links (a
  predicted link there is a false positive); gold mentions with an unknown ID
  (see `ids.entity_status`) are left out altogether, and so are predicted
  links on their span;
* el_ed_acc: disambiguation accuracy on the gold links whose span was
  predicted: over all gold links when the linker is given the gold spans
  (mode "ents" or "spans" on gold mentions), else among the detected ones;
* el_md_p / el_md_r / el_md_f: mention detection (same span, any label or
  ID). Unlike `evaluate`, which counts the linked predictions only, every
  predicted entity counts, linked or not (e.g. the mentions of the linker's
  `extra_labels`, which have no ID): what the linker's tagger detects.
"""

from typing import Any, Callable, Dict, Iterable

from spacy.training import Example
from spacy.util import registry

from ..evaluation.metrics import DocumentResult, score, span_mentions


@registry.scorers("spacy_refined.linking_scorer.v1")
def make_linking_scorer() -> Callable[..., Dict[str, Any]]:
    """The scorer of `refined_linker`.

    RETURNS (Callable[..., Dict[str, Any]]): `score_linking`.
    """
    return score_linking


def score_linking(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """Score the predicted `doc.ents` against the gold ones (see the module docstring).

    examples (Iterable[Example]): The predicted and reference docs.
    kwargs (Any): The component's settings, which spaCy passes to scorers; unused.
    RETURNS (Dict[str, Any]): el_p, el_r, el_f, el_ed_acc, el_md_p, el_md_r and el_md_f.
    """
    documents = (
        DocumentResult(str(i), span_mentions(eg.reference.ents), span_mentions(eg.predicted.ents))
        for i, eg in enumerate(examples)
    )
    metrics = score(documents)
    el, md = metrics["el"]["nil_fp"]["micro"], metrics["md"]["micro"]
    return {
        "el_p": el["p"],
        "el_r": el["r"],
        "el_f": el["f"],
        "el_ed_acc": metrics["ed"]["accuracy_detected"],
        "el_md_p": md["p"],
        "el_md_r": md["r"],
        "el_md_f": md["f"],
    }
