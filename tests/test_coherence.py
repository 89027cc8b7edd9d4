"""Document coherence from the KB's facts: which candidates fit the document's other mentions."""

from typing import List

import numpy as np
import pytest
import spacy
from conftest import ENTITIES, build_kb

from spacy_refined.kb import RefinedKB
from spacy_refined.kb.candidates import person_name_candidates
from spacy_refined.model.types import Mentions
from spacy_refined.pipeline.coherence import document_coherence

FACTS = {
    "Q41421": [{"relation": "member of sports team", "object": "Q128109"}],  # Michael Jordan -> Chicago Bulls
    "Q128109": [{"relation": "located in", "object": "Q1297"}],  # Chicago Bulls -> Chicago
    # Washington, D.C. -> George Washington (both candidates of "Washington"), and a country
    "Q61": [{"relation": "named after", "object": "Q23"}, {"relation": "country", "object": "Q30"}],
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> RefinedKB:
    entities = [{**e, "facts": FACTS.get(e["id"], [])} for e in ENTITIES]
    entities.append(
        {"id": "Q30", "label": "United States", "description": "country in North America", "types": ["Q6256"]}
    )
    return RefinedKB.load(build_kb(tmp_path_factory.mktemp("kb") / "facts", entities))


def features(kb: RefinedKB, texts: List[str]):
    """{(mention, entity ID): (prior-weighted, any)} for a document's mentions."""
    batch = person_name_candidates(kb, texts)
    values = document_coherence(kb, texts, batch.lengths, batch.entities, batch.priors)
    ids = kb.entity_ids(batch.entities)
    mention_of = np.repeat(np.arange(len(texts)), batch.lengths)
    return {(int(m), entity_id): tuple(row) for m, entity_id, row in zip(mention_of, ids, values.tolist())}


def test_links_among_finds_facts_both_ways_within_the_set(kb):
    entities = kb.find(["Q1297", "Q41421", "Q128109", "Q90"])
    source, target = kb.links_among(entities)
    pairs = {(int(a), int(b)) for a, b in zip(source, target)}
    # Jordan (1) - Bulls (2), Bulls (2) - Chicago (0), each both ways; Paris (3) has no fact.
    assert pairs == {(1, 2), (2, 1), (2, 0), (0, 2)}
    assert kb.links_among(kb.find(["Q61"]))[0].size == 0  # its fact's object is not in the set


def test_candidate_connected_to_other_mentions_gets_coherence(kb):
    found = features(kb, ["Jordan", "Bulls"])
    player, country = found[(0, "Q41421")], found[(0, "Q810")]
    assert player[1] == 1.0  # the one other mention has a connected candidate
    assert player[0] == pytest.approx(1.0)  # Bulls has one candidate, prior 1
    assert country == (0.0, 0.0)
    assert found[(1, "Q128109")][1] == 1.0  # connected to one of Jordan's candidates
    assert found[(1, "Q128109")][0] == pytest.approx(
        kb.candidates(["Jordan"])[0][1][list(kb.entity_ids(kb.candidates(["Jordan"])[0][0])).index("Q41421")]
    )


def test_coherence_is_a_share_of_the_other_mentions(kb):
    found = features(kb, ["Jordan", "Bulls", "Paris", "Zürich"])
    assert found[(0, "Q41421")][1] == pytest.approx(1 / 3)
    assert all(0.0 <= value <= 1.0 for row in found.values() for value in row)


def test_repeated_mentions_do_not_support_themselves(kb):
    # Two "Jordan" mentions are one ambiguity: nothing else in the document.
    assert all(row == (0.0, 0.0) for row in features(kb, ["Jordan", "jordan"]).values())
    # Candidates of one mention connected to each other (Washington, D.C. is
    # named after George Washington) do not lift each other either.
    assert kb.links_among(kb.find(["Q61", "Q23"]))[0].size == 2
    assert all(row == (0.0, 0.0) for row in features(kb, ["Washington", "Paris"]).values())


def test_no_facts_or_single_mention_gives_zeros(kb_path):
    plain = RefinedKB.load(kb_path)
    batch = person_name_candidates(plain, ["Jordan", "Bulls"])
    assert not document_coherence(plain, ["Jordan", "Bulls"], batch.lengths, batch.entities, batch.priors).any()
    batch = person_name_candidates(plain, ["Jordan"])
    assert document_coherence(plain, ["Jordan"], batch.lengths, batch.entities, batch.priors).shape == (
        len(batch.entities),
        2,
    )


def test_linker_passes_coherence_with_each_candidate(kb):
    nlp = spacy.blank("en")
    nlp.add_pipe("refined_kb").set_kb(kb)
    linker = nlp.add_pipe("refined_linker")
    doc = nlp.make_doc("Jordan scored as the Bulls won .")
    candidates = linker._lookup([doc], Mentions.from_rows([(0, 0, 1, 0), (0, 4, 5, 0)]), True)
    assert candidates.coherence.shape == (*candidates.entities.shape, 2)
    row = list(kb.entity_ids(candidates.entities[0][candidates.mask[0]])).index("Q41421")
    assert candidates.coherence[0, row, 1] == 1.0
    assert not candidates.coherence[~candidates.mask].any()
