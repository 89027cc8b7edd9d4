"""The linking scorer on hand-made examples, and against the `evaluate` command."""

from typing import List, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry
from spacy.vocab import Vocab

from spacy_refined.evaluation import evaluate
from spacy_refined.ids import NIL, UNKNOWN
from spacy_refined.pipeline import score_linking
from spacy_refined.training import docs_from_jsonl

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
    assert scores["el_md_p"] == pytest.approx(5 / 6)
    assert scores["el_md_r"] == pytest.approx(5 / 6)
    assert scores["el_md_f"] == pytest.approx(5 / 6)
    # gold links with a predicted span: a (right), bc (wrong), h (NIL: wrong)
    assert scores["el_ed_acc"] == pytest.approx(1 / 3)


def test_precision_and_recall_differ():
    scores = score_linking([example(gold=[(0, 1, "Q1"), (2, 3, "Q2")], predicted=[(0, 1, "Q1")])])
    assert (scores["el_p"], scores["el_r"]) == (1.0, 0.5)
    assert scores["el_f"] == pytest.approx(2 / 3)
    assert (scores["el_md_p"], scores["el_md_r"], scores["el_ed_acc"]) == (1.0, 0.5, 1.0)


def test_no_examples_score_zero():
    assert score_linking([]) == {
        "el_p": 0.0,
        "el_r": 0.0,
        "el_f": 0.0,
        "el_ed_acc": 0.0,
        "el_md_p": 0.0,
        "el_md_r": 0.0,
        "el_md_f": 0.0,
    }


def test_registered_scorer_ignores_component_settings():
    scorer = registry.scorers.get("spacy_refined.linking_scorer.v1")()
    result = scorer([example(gold=[(0, 1, "Q1")], predicted=[(0, 1, "Q1")])], labels=("PERSON",), threshold=0.5)
    assert result["el_f"] == result["el_md_f"] == result["el_ed_acc"] == 1.0


# A pipeline whose links are known in advance, for the `evaluate` command: the
# (start, end, kb_id) of the spans it predicts, by text.
PREDICTED = {
    "Ann met Bob in Rome and Paris .": [(0, 3, "Q1"), (8, 11, "Q9"), (15, 19, "Q3"), (24, 29, "Q4")],
    "Carl visited Oslo .": [(0, 4, NIL), (5, 12, "Q6")],
    "Nothing here .": [(8, 12, "")],  # a span nobody linked: a detected mention, no link
}
GOLD = [
    {
        "id": "1",
        "text": "Ann met Bob in Rome and Paris .",
        "labels": [
            {"span": [0, 3], "entity_id": "Q1"},
            {"span": [8, 11], "entity_id": "Q2"},
            {"span": [15, 19], "entity_id": "<NIL>"},
            {"span": [24, 29], "entity_id": "<NO_MAPPING>"},  # linked, ID unknown: left out of the links
        ],
    },
    {
        "id": "2",
        "text": "Carl visited Oslo .",
        "labels": [{"span": [0, 4], "entity_id": "Q5"}, {"span": [13, 17], "entity_id": None}],
    },
    {"id": "3", "text": "Nothing here .", "labels": []},
]


@Language.component("spacy_refined_test_known_links")
def known_links(doc: Doc) -> Doc:
    doc.ents = [doc.char_span(start, end, label="ENT", kb_id=kb_id) for start, end, kb_id in PREDICTED[doc.text]]
    return doc


def test_training_scorer_and_evaluate_agree(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("spacy_refined_test_known_links")
    nlp.to_disk(tmp_path / "nlp")
    metrics = evaluate(tmp_path / "nlp", GOLD)
    references = list(docs_from_jsonl(nlp, GOLD))
    assert [ent.kb_id_ for ent in references[0].ents] == ["Q1", "Q2", NIL, UNKNOWN]
    scores = score_linking([Example(nlp(reference.text), reference) for reference in references])
    el = metrics["el"]["nil_fp"]["micro"]
    assert (scores["el_p"], scores["el_r"], scores["el_f"]) == (el["p"], el["r"], el["f"])
    assert scores["el_ed_acc"] == metrics["ed"]["accuracy_detected"]
    # gold links: Ann, Bob, Carl; predicted links: Ann (right), Bob (wrong), Rome (gold NIL), "visited"
    # (Paris has an unknown gold ID, Carl is predicted NIL, "here" is not linked)
    assert scores["el_p"] == pytest.approx(1 / 4) and scores["el_r"] == pytest.approx(1 / 3)
    # gold links with a predicted span: Ann (right), Bob, Carl
    assert scores["el_ed_acc"] == pytest.approx(1 / 3)
    # mentions: 6 gold, 5 shared; predicted: the 6 linked ones for `evaluate`, and "here" too for training
    assert metrics["md"]["micro"]["p"] == pytest.approx(5 / 6) and scores["el_md_p"] == pytest.approx(5 / 7)
    assert metrics["md"]["micro"]["r"] == scores["el_md_r"] == pytest.approx(5 / 6)
