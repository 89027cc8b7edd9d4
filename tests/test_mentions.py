"""Mention sources and the alias matcher; the zero-training path for a KB of one's own entities."""

from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import spacy
from conftest import build_kb
from spacy.tokens import Doc, Span

from spacy_refined.kb.matcher import AliasMatcher
from spacy_refined.kb.store import RefinedKB
from spacy_refined.pipeline.mentions import make_alias_mentions, make_combined_mentions, make_span_group_mentions

OWN_ENTITIES = [
    {
        "id": "E1",
        "label": "Acme Robotics",
        "aliases": ["Acme"],
        "description": "maker of warehouse robots",
        "types": ["ORG"],
    },
    {"id": "E2", "label": "Zephyr Lake", "description": "lake in the northern hills", "types": ["LAKE"]},
    {"id": "E3", "label": "Marta Quill", "description": "engineer, founder of Acme Robotics", "types": ["Q5"]},
    {"id": "E4", "label": "New York", "description": "state of the United States", "types": ["STATE"]},
    {"id": "E5", "label": "New York City", "description": "most populous city of the United States", "types": ["CITY"]},
    {"id": "E6", "label": "York", "description": "city in England", "types": ["CITY"]},
    {"id": "E7", "label": "United States", "aliases": ["US"], "description": "country", "types": ["COUNTRY"]},
    {"id": "E8", "label": "May", "description": "a stop word as a label", "types": ["PERSON_NAME"]},
    {"id": "E9", "label": "The", "aliases": ["It"], "description": "more stop words", "types": ["WORD"]},
    {"id": "E10", "label": "Columbus", "description": "city in Ohio", "types": ["CITY"]},
    {"id": "E11", "label": "Ohio", "aliases": ["Columbus, Ohio"], "description": "state", "types": ["STATE"]},
]


@pytest.fixture(scope="module")
def own_kb_path(tmp_path_factory) -> Path:
    return build_kb(tmp_path_factory.mktemp("own") / "kb", OWN_ENTITIES)


@pytest.fixture(scope="module")
def own_kb(own_kb_path) -> RefinedKB:
    return RefinedKB.load(own_kb_path)


@pytest.fixture(scope="module")
def zero_training(own_kb_path) -> spacy.Language:
    """The README's zero-training pipeline: a KB of one's own entities, alias mentions, no training."""
    nlp = spacy.blank("en")
    nlp.add_pipe("refined_kb", config={"external_kb_path": str(own_kb_path)})
    nlp.add_pipe("refined_linker", config={"mentions": {"@misc": "spacy_refined.AliasMentions.v1"}})
    nlp.initialize()
    return nlp


def matched(kb: RefinedKB, text: str, **settings) -> List[str]:
    doc = spacy.blank("en")(text)
    matches = AliasMatcher(**settings)(kb, [doc])
    return [doc[s:e].text for s, e in zip(matches.start.tolist(), matches.end.tolist())]


def links(doc: Doc) -> List[Tuple[str, str]]:
    return [(ent.text, ent.kb_id_) for ent in doc.ents]


def test_zero_training_links_own_entities(zero_training):
    doc = zero_training("Marta Quill founded Acme Robotics in 2019 near Zephyr Lake. Quill still runs Acme.")
    assert links(doc) == [
        ("Marta Quill", "E3"),
        ("Acme Robotics", "E1"),
        ("Zephyr Lake", "E2"),
        ("Quill", "E3"),  # the surname of a person named in full
        ("Acme", "E1"),
    ]
    assert all(0.5 < ent._.kb_score <= 1.0 for ent in doc.ents)
    assert doc.ents[0].label_ == "PERSON"


def test_longest_match_wins_over_nested_and_overlapping(own_kb):
    assert matched(own_kb, "She moved to New York City last year.") == ["New York City"]
    assert matched(own_kb, "New York and York are far apart.") == ["New York", "York"]


def test_stop_word_aliases_are_not_proposed(own_kb):
    assert matched(own_kb, "The plan may work. It is May in the US now.") == ["US"]
    assert matched(own_kb, "The plan may work. It is May.", skip_stop_words=False) == ["It", "May"]


def test_names_end_at_punctuation_before_a_space(own_kb):
    assert matched(own_kb, "He lives in Columbus, Ohio today.") == ["Columbus", "Ohio"]


def test_lower_case_text_needs_require_capital_off(own_kb):
    assert matched(own_kb, "acme robotics is near zephyr lake") == []
    assert matched(own_kb, "acme robotics is near zephyr lake", require_capital=False) == [
        "acme robotics",
        "zephyr lake",
    ]


def test_min_prior_turns_down_ambiguous_aliases(tmp_path):
    entities = [{"id": f"A{i}", "label": f"Thing {i}", "aliases": ["Widget"], "types": ["T"]} for i in range(12)]
    kb = RefinedKB.load(build_kb(tmp_path / "kb", entities))
    assert matched(kb, "A Widget and Thing 3.") == ["Thing 3"]
    assert matched(kb, "A Widget and Thing 3.", min_prior=0.0) == ["Widget", "Thing 3"]


def test_combined_sources_keep_the_first_and_add_what_does_not_overlap(own_kb):
    doc = spacy.blank("en")("Marta Quill visited New York City and Zephyr Lake.")
    doc.spans["mentions"] = [Span(doc, 3, 5)]  # "New York": the given span wins over the longer alias match
    source = make_combined_mentions(make_span_group_mentions("mentions"), make_alias_mentions())
    mentions = source([doc], own_kb, None)
    assert [doc[s:e].text for s, e in zip(mentions.start.tolist(), mentions.end.tolist())] == [
        "Marta Quill",
        "New York",
        "Zephyr Lake",
    ]
    assert mentions.origin.tolist() == [3, 2, 3]
    assert not source.uses_tagger and source.alias_matcher is not None


def test_pipe_equals_call_and_save_load_identical(zero_training, tmp_path):
    texts = ["Acme Robotics opened in New York.", "", "Zephyr Lake froze.", "Nothing to link here."]
    called = [links(zero_training(text)) for text in texts]
    assert [links(doc) for doc in zero_training.pipe(texts, batch_size=3)] == called
    zero_training.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert [links(doc) for doc in loaded.pipe(texts)] == called
    scores = [ent._.kb_score for ent in loaded("Acme Robotics opened in New York.").ents]
    assert np.allclose(scores, [ent._.kb_score for ent in zero_training("Acme Robotics opened in New York.").ents])


def test_unknown_names_stay_unlinked(zero_training):
    assert links(zero_training("Gorblax Industries hired Pat Smith.")) == []


def test_training_shows_the_scorer_alias_matches_as_nil(own_kb_path):
    """Alias matches that are no gold mention are NIL examples; a document
    without gold annotation gives none; gold mentions keep their IDs."""
    from spacy.training import Example

    from spacy_refined.ids import NIL
    from spacy_refined.model.types import Origin

    nlp = spacy.blank("en")
    nlp.add_pipe("refined_kb", config={"external_kb_path": str(own_kb_path)})
    linker = nlp.add_pipe("refined_linker", config={"alias_share": 1.0})
    nlp.initialize()
    annotated = nlp.make_doc("Marta Quill met reporters at Zephyr Lake .")
    annotated.ents = [Span(annotated, 0, 2, label="PERSON", kb_id="E3")]
    unannotated = nlp.make_doc("Acme Robotics hired Marta Quill .")
    examples = [Example(nlp.make_doc(annotated.text), annotated), Example(unannotated, unannotated.copy())]
    docs = [eg.predicted for eg in examples]
    gold = linker._with_alias_matches(docs, linker._gold(examples))
    shown = [
        (int(d), docs[d][s:e].text, Origin(o).name, kb_id)
        for d, s, e, o, kb_id in zip(
            gold.mentions.doc, gold.mentions.start, gold.mentions.end, gold.mentions.origin, gold.kb_ids
        )
    ]
    assert shown == [(0, "Marta Quill", "ALIASES", "E3"), (0, "Zephyr Lake", "ALIASES", NIL)]
    losses = nlp.update(examples)
    assert np.isfinite(losses["refined_linker"])


def test_partial_annotation_leaves_unlinked_names_out_of_training(own_kb_path):
    """Wikipedia links name some mentions only: the KB's names outside them
    are missing annotation, neither "outside" for the tagger nor NIL for the scorer."""
    from spacy.training import Example

    from spacy_refined.ids import NIL
    from spacy_refined.training import docs_from_jsonl

    nlp = spacy.blank("en")
    nlp.add_pipe("refined_kb", config={"external_kb_path": str(own_kb_path)})
    linker = nlp.add_pipe("refined_linker")
    nlp.initialize()
    record = {"text": "Marta Quill met reporters at Zephyr Lake .", "labels": [{"span": [0, 11], "entity_id": "E3"}]}
    complete, partial = docs_from_jsonl(nlp, [record, {**record, "complete": False}], kb=linker.kb)
    assert [t.ent_iob_ for t in complete] == ["B", "I", "O", "O", "O", "O", "O", "O"]
    assert [t.ent_iob_ for t in partial] == ["B", "I", "O", "O", "O", "", "", "O"]
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in (complete, partial)]
    gold = linker._with_alias_matches([eg.predicted for eg in examples], linker._gold(examples))
    assert list(zip(gold.mentions.doc.tolist(), gold.kb_ids)) == [(0, "E3"), (0, NIL), (1, "E3")]
    assert (gold.tags[len(complete) + 5 : len(complete) + 7] == -1).all()
