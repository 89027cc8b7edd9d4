"""spacy_refined.whitespace_augmenter.v1: whitespace tokens in training docs, gold links kept."""

import random

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Corpus, Example
from spacy.util import registry

from spacy_refined.training import docs_from_jsonl

TEXT = (
    "EU rejects German call to boycott British lamb . Peter Blackburn BRUSSELS 1996-08-22 The European Commission said"
)


def make_augmenter(**settings):
    return registry.augmenters.get("spacy_refined.whitespace_augmenter.v1")(**settings)


@pytest.fixture
def example():
    nlp = spacy.blank("en")
    doc = nlp.make_doc(TEXT)
    doc.ents = [
        doc.char_span(0, 2, "ORG", kb_id="Q458"),
        doc.char_span(TEXT.find("Peter"), TEXT.find(" BRUSSELS"), "PERSON", kb_id="NIL"),
        doc.char_span(TEXT.find("The European"), TEXT.find(" said"), "ORG", kb_id="Q8880"),
    ]
    doc.user_data["id"] = "1"
    return nlp, Example(nlp.make_doc(TEXT), doc)


def test_inserts_whitespace_and_keeps_links(example):
    nlp, eg = example
    augment = make_augmenter(level=1.0, per_token=0.3)
    for seed in range(5):
        random.seed(seed)
        (new,) = augment(nlp, eg)
        reference = new.reference
        assert sum(t.is_space for t in reference) >= 3
        assert [(e.text, e.label_, e.kb_id_) for e in reference.ents] == [
            (e.text, e.label_, e.kb_id_) for e in eg.reference.ents
        ]
        assert not any(t.is_space for e in reference.ents for t in e)
        assert new.predicted.text == reference.text and reference.text.split() == TEXT.split()
        assert reference.user_data["id"] == "1"


def test_level_zero_keeps_examples(example):
    nlp, eg = example
    assert list(make_augmenter(level=0.0)(nlp, eg)) == [eg]


def test_with_a_corpus(tmp_path, records):
    """Through spaCy's Corpus reader, as `spacy train` runs it: every mention and link survives."""
    nlp = spacy.blank("en")
    gold = list(docs_from_jsonl(nlp, records))
    DocBin(docs=gold, store_user_data=True).to_disk(tmp_path / "train.spacy")
    random.seed(0)
    corpus = Corpus(tmp_path / "train.spacy", augmenter=make_augmenter(level=1.0, per_token=0.2))
    augmented = list(corpus(nlp))
    assert len(augmented) == len(gold)
    assert any(t.is_space for eg in augmented for t in eg.reference)
    for eg, doc in zip(augmented, gold):
        assert [(e.text, e.kb_id_) for e in eg.reference.ents] == [(e.text, e.kb_id_) for e in doc.ents]


@pytest.mark.parametrize("settings", [{"level": 1.5}, {"per_token": -1.0}, {"variants": ["x"]}, {"variants": []}])
def test_bad_settings(settings):
    with pytest.raises(ValueError, match="whitespace augmenter"):
        make_augmenter(**settings)
