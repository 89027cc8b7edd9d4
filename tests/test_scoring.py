"""The linking scorer on hand-made examples."""
from typing import List, Tuple

import pytest
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry
from spacy.vocab import Vocab

from spacy_refined.pipeline import score_linking

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h"]


def doc_with(vocab: Vocab, ents: List[Tuple[int, int, str]]) -> Doc:
    doc = Doc(vocab, words=WORDS)
    doc.ents = [Span(doc, start, end, label="ENT", kb_id=kb_id) for start, end, kb_id in ents]
    return doc


def example(gold: List[Tuple[int, int, str]], predicted: List[Tuple[int, int, str]]) -> Example:
    vocab = Vocab()
    return Example(doc_with(vocab, predicted), doc_with(vocab, gold))


def test_scores_on_hand_made_examples():
    examples = [
        example(
            gold=[(0, 1, "Q1"), (1, 3, "Q2"), (3, 4, "NIL"), (4, 5, ""), (5, 6, "Q3")],
            # right; wrong ID; a link where gold is NIL; unknown gold ID (ignored);
            # a spurious mention; "f" (Q3) missed
            predicted=[(0, 1, "Q1"), (1, 3, "Q9"), (3, 4, "Q4"), (4, 5, "Q5"), (6, 7, "Q6")],
        ),
        example(gold=[(7, 8, "Q7")], predicted=[(7, 8, "NIL")]),  # predicted NIL for a gold link
        example(gold=[], predicted=[]),
    ]
    scores = score_linking(examples)
    # links: gold a, bc, f, h = 4; predicted a, bc, d, g = 4; right: a
    assert scores["el_p"] == pytest.approx(1 / 4)
    assert scores["el_r"] == pytest.approx(1 / 4)
    assert scores["el_f"] == pytest.approx(1 / 4)
    # mentions: gold 6, predicted 6, same span: a, bc, d, e, h
    assert scores["md_p"] == pytest.approx(5 / 6)
    assert scores["md_r"] == pytest.approx(5 / 6)
    assert scores["md_f"] == pytest.approx(5 / 6)
    # gold links with a predicted span: a (right), bc (wrong), h (NIL: wrong)
    assert scores["ed_acc"] == pytest.approx(1 / 3)


def test_precision_and_recall_differ():
    scores = score_linking([example(gold=[(0, 1, "Q1"), (2, 3, "Q2")], predicted=[(0, 1, "Q1")])])
    assert (scores["el_p"], scores["el_r"]) == (1.0, 0.5)
    assert scores["el_f"] == pytest.approx(2 / 3)
    assert (scores["md_p"], scores["md_r"], scores["ed_acc"]) == (1.0, 0.5, 1.0)


def test_no_examples_score_zero():
    assert score_linking([]) == {"el_p": 0.0, "el_r": 0.0, "el_f": 0.0, "md_p": 0.0, "md_r": 0.0, "md_f": 0.0, "ed_acc": 0.0}


def test_registered_scorer_ignores_component_settings():
    scorer = registry.scorers.get("spacy_refined.linking_scorer.v1")()
    result = scorer([example(gold=[(0, 1, "Q1")], predicted=[(0, 1, "Q1")])], labels=("PERSON",), threshold=0.5)
    assert result["el_f"] == result["md_f"] == result["ed_acc"] == 1.0
