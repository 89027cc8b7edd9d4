"""Entity linking scores for `spacy train` and `spacy evaluate`.

Mentions are compared by their character offsets in `doc.ents`:

* el_p / el_r / el_f: micro precision, recall and F1 of links: a predicted
  link is correct when a gold mention has the same span and the same ID.
  Gold mentions linked to NIL are left out of the gold links (a predicted
  link there is a false positive); gold mentions with an unknown ID (empty
  `kb_id`) are left out altogether, and so are predicted links on their span;
* ed_acc: disambiguation accuracy on the gold links whose span was
  predicted: over all gold links when the linker is given the gold spans
  (mode "ents" or "spans" on gold mentions), else among the detected ones;
* md_p / md_r / md_f: mention detection (same span, any label or ID).
"""
from typing import Any, Callable, Dict, Iterable

from spacy.training import Example
from spacy.util import registry

NIL = "NIL"


@registry.scorers("spacy_refined.linking_scorer.v1")
def make_linking_scorer() -> Callable[..., Dict[str, Any]]:
    """The scorer of `refined_linker` (keys el_p, el_r, el_f, ed_acc, md_p, md_r, md_f)."""
    return score_linking


def score_linking(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """Score the predicted `doc.ents` against the gold ones (see the module docstring)."""
    el_correct = el_predicted = el_gold = 0
    md_correct = md_predicted = md_gold = 0
    ed_correct = ed_total = 0
    for eg in examples:
        gold = {(e.start_char, e.end_char): e.kb_id_ for e in eg.reference.ents}
        predicted = {(e.start_char, e.end_char): e.kb_id_ for e in eg.predicted.ents}
        md_gold += len(gold)
        md_predicted += len(predicted)
        md_correct += len(gold.keys() & predicted.keys())
        gold_links = {span: kb_id for span, kb_id in gold.items() if kb_id not in ("", NIL)}
        predicted_links = {
            span: kb_id for span, kb_id in predicted.items() if kb_id not in ("", NIL) and gold.get(span) != ""
        }
        el_gold += len(gold_links)
        el_predicted += len(predicted_links)
        el_correct += sum(predicted_links.get(span) == kb_id for span, kb_id in gold_links.items())
        for span, kb_id in gold_links.items():
            if span in predicted:
                ed_total += 1
                ed_correct += predicted[span] == kb_id
    scores: Dict[str, Any] = {}
    for prefix, correct, n_predicted, n_gold in (("el", el_correct, el_predicted, el_gold), ("md", md_correct, md_predicted, md_gold)):
        precision = correct / n_predicted if n_predicted else 0.0
        recall = correct / n_gold if n_gold else 0.0
        scores[f"{prefix}_p"] = precision
        scores[f"{prefix}_r"] = recall
        scores[f"{prefix}_f"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    scores["ed_acc"] = ed_correct / ed_total if ed_total else 0.0
    return scores
