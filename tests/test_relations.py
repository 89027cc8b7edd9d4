"""Disambiguation that reasons over KB facts: the relation head's pairs, the
KB score of the candidates, distant supervision and `doc._.relations`."""

import pickle
from typing import List, Optional

import numpy as np
import pytest
import spacy
import torch
from conftest import add_linker, build_kb
from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_refined.kb import RefinedKB
from spacy_refined.model._torch import wrapped_module
from spacy_refined.model.heads import CandidateScorer, CandidateTensors
from spacy_refined.model.relations import RelationTensors, kb_scores, relation_targets
from spacy_refined.model.types import Mentions
from spacy_refined.pipeline.relations import KBRelations, connected, displacy_relations, facts_among

PERSON = {"types": ["Q5"], "aliases": ["Clinton"]}
ENTITIES = [
    {
        "id": "Q1124",
        "label": "Bill Clinton",
        "description": "42nd president of the United States",
        "popularity": 0.4,
        "facts": [
            {"relation": "P19", "object": "Q1010"},  # place of birth: Hope, Arkansas
            {"relation": "P69", "object": "Q5910"},  # educated at: Hot Springs High School
        ],
        **PERSON,
    },
    {
        "id": "Q6294",
        "label": "Hillary Clinton",
        "description": "67th United States Secretary of State",
        "popularity": 0.9,
        "facts": [
            {"relation": "P551", "object": "Q1010"},  # residence (facts to the same entities: equal coherence)
            {"relation": "P108", "object": "Q5910"},  # employer
        ],
        **PERSON,
    },
    {
        "id": "Q1010",
        "label": "Hope",
        "aliases": ["Hope, Arkansas"],
        "description": "city in Arkansas",
        "types": ["Q515"],
    },
    {"id": "Q5910", "label": "Hot Springs High School", "description": "school in Arkansas", "types": ["Q3914"]},
]
TEXT = "Clinton was born in Hope , Arkansas and went to Hot Springs High School ."
ENTS = [(0, 1, "PERSON", "Q1124"), (4, 7, "GPE", "Q1010"), (10, 14, "ORG", "Q5910")]


@pytest.fixture(scope="module")
def clinton_kb(tmp_path_factory):
    return build_kb(tmp_path_factory.mktemp("kb") / "clinton", ENTITIES)


@pytest.fixture(scope="module")
def factless_kb(tmp_path_factory):
    return build_kb(tmp_path_factory.mktemp("kb") / "factless", [{**e, "facts": []} for e in ENTITIES])


def clinton_doc(nlp: Language, gold: bool = False) -> Doc:
    doc = nlp.make_doc(TEXT)
    doc.ents = [Span(doc, s, e, label=label, kb_id=kb_id if gold else "") for s, e, label, kb_id in ENTS]
    return doc


def pipeline(kb_path, relations: Optional[dict] = None, off: bool = False, stated=("P19", "P69")) -> Language:
    """A linker (mode ents) initialized on the Clinton document, its relation
    head set to state `stated` from the first mention to the others."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    config = {"mentions": {"@misc": "spacy_refined.EntMentions.v1"}}
    config["relations"] = None if off else {"@misc": "spacy_refined.KBRelations.v1", **(relations or {})}
    add_linker(nlp, kb_path, config=config)
    nlp.initialize(lambda: [Example(clinton_doc(nlp), clinton_doc(nlp, gold=True))])
    heads = wrapped_module(nlp.get_pipe("refined_linker").model.get_ref("heads"))
    if heads.relations is not None:
        kb = nlp.get_pipe("refined_kb").kb
        layer = heads.relations.mlp[-1]
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.fill_(-10.0)
            for relation in stated:
                if relation in kb.relation_ids:
                    layer.bias[kb.relation_ids.index(relation)] = 10.0
    return nlp


def linked(doc: Doc) -> List[str]:
    return [ent.kb_id_ for ent in doc.ents]


def test_matching_facts_win_only_with_the_mechanism(clinton_kb):
    off = pipeline(clinton_kb, off=True)
    assert linked(off(clinton_doc(off)))[0] == "Q6294"  # the prior: Hillary
    assert clinton_doc(off)._.relations is None
    on = pipeline(clinton_kb)
    doc = on(clinton_doc(on))
    assert linked(doc) == ["Q1124", "Q1010", "Q5910"]  # born in Hope: Bill
    found = [(r.head.text, r.relation, r.tail.text) for r in doc._.relations]
    assert found == [("Clinton", "P19", "Hope , Arkansas"), ("Clinton", "P69", "Hot Springs High School")]
    assert all(r.score > 0.99 and r.head.kb_id_ == "Q1124" for r in doc._.relations)
    shown = displacy_relations(doc)
    assert [(w["text"], w["tag"]) for w in shown["words"] if w["tag"]] == [
        ("Clinton", "Q1124"),
        ("Hope , Arkansas", "Q1010"),
        ("Hot Springs High School", "Q5910"),
    ]
    assert [(a["start"], a["end"], a["dir"]) for a in shown["arcs"]] == [(0, 4, "right"), (0, 8, "right")]
    assert "<svg" in displacy.render(shown, style="dep", manual=True)
    # Relations the KB has for Hillary (residence, employer) do not lift her: the text does not state them.
    other = pipeline(clinton_kb, stated=("P551", "P108"))
    assert linked(other(clinton_doc(other)))[0] == "Q6294"


def test_pairs_beyond_the_window_are_ignored(clinton_kb):
    # "was born in" and "Arkansas and went to" lie between the mentions: 3 and 4 tokens.
    nlp = pipeline(clinton_kb, {"window": 2})
    doc = nlp(clinton_doc(nlp))
    assert linked(doc)[0] == "Q6294" and doc._.relations == []
    mentions = Mentions.from_rows([(0, 0, 1, 0), (0, 4, 7, 0), (0, 10, 14, 0), (1, 0, 1, 0), (1, 1, 2, 0)])
    assert KBRelations(window=3, threshold=0.5).pairs(mentions).T.tolist() == [[0, 1], [1, 2], [3, 4]]
    assert KBRelations(window=2, threshold=0.5).pairs(mentions).T.tolist() == [[3, 4]]
    # Overlapping spans (mode spans) are not a pair.
    nested = Mentions.from_rows([(0, 0, 3, 0), (0, 1, 2, 0), (0, 3, 4, 0)])
    assert KBRelations(window=1, threshold=0.5).pairs(nested).T.tolist() == [[0, 2], [1, 2]]


def test_prediction_reads_only_pairs_with_a_fact_between_their_candidates():
    pairs = np.array([[0, 0, 1], [1, 2, 2]])
    rows = np.array([[0, 1], [2, -1], [3, -1]])
    facts = np.array([[1, 3], [0, 1], [2, 0]])  # 1 -r0-> 2 (mentions 0, 1); 3 -r1-> 0 (mentions 2, 0)
    assert connected(pairs, rows, facts).tolist() == [True, True, False]
    assert connected(pairs, rows, np.zeros((3, 0), dtype="int64")).tolist() == [False, False, False]


def test_kb_without_facts_gives_zeros(factless_kb):
    nlp = pipeline(factless_kb)
    assert linked(nlp(clinton_doc(nlp)))[0] == "Q6294"
    assert nlp(clinton_doc(nlp))._.relations == []
    kb = RefinedKB.load(factless_kb)
    assert facts_among(kb, np.arange(len(kb)), 5).shape == (3, 0)
    relations = RelationTensors(torch.tensor([[0], [1]]), torch.tensor([[1], [1]]), torch.zeros(3, 0, dtype=torch.long))
    scores = kb_scores(
        torch.ones(1, 4),
        relations,
        torch.tensor([[0, 1], [2, -1]]).clamp(min=0),
        torch.full((2, 2), 0.5),
        torch.tensor([[True, True], [True, False]]),
        3,
    )
    assert scores.shape == (2, 2) and not scores.any()


def test_kb_score_is_the_expected_number_of_stated_facts():
    """The follow-based score equals the formula, summed by brute force."""
    rng = np.random.default_rng(0)
    n_entities, n_base, n_mentions, k = 12, 3, 5, 3
    facts = np.stack([rng.integers(0, n_entities, 40), rng.integers(0, n_base, 40), rng.integers(0, n_entities, 40)])
    facts = np.unique(facts, axis=1)
    rows = torch.as_tensor(np.stack([rng.choice(n_entities, k, replace=False) for _ in range(n_mentions)]))
    mask = torch.ones(n_mentions, k, dtype=torch.bool)
    mask[4, 2] = False
    probs = torch.softmax(torch.as_tensor(rng.normal(size=(n_mentions, k)), dtype=torch.float32), dim=1)
    pairs = torch.tensor([[0, 0, 1, 2], [1, 3, 2, 4]])
    q = torch.rand(pairs.shape[1], 2 * n_base) * 0.3
    relations = RelationTensors(pairs, torch.zeros_like(pairs), torch.as_tensor(facts))
    scores = kb_scores(q, relations, rows, probs, mask, n_entities)
    has = {tuple(f) for f in facts.T.tolist()}
    expected = torch.zeros(n_mentions, k)
    for p, (i, j) in enumerate(pairs.T.tolist()):
        for target, source, forward in ((i, j, True), (j, i, False)):
            for a in range(k):
                for b in range(k):
                    if not (mask[target, a] and mask[source, b]):
                        continue
                    ea, eb = int(rows[target, a]), int(rows[source, b])
                    for r in range(n_base):
                        # q[:, r]: (head, r, tail); q[:, R + r]: (tail, r, head)
                        subject_first = (ea, r, eb) if forward else (eb, r, ea)
                        subject_last = (eb, r, ea) if forward else (ea, r, eb)
                        expected[target, a] += probs[source, b] * (
                            q[p, r] * (subject_first in has) + q[p, n_base + r] * (subject_last in has)
                        )
    expected = expected.clamp(max=1.0) * mask
    assert torch.allclose(scores, expected, atol=1e-5)
    assert expected.sum() > 0.5  # the example has facts to find


def test_distant_supervision_targets_are_the_gold_entities_facts(clinton_kb):
    kb = RefinedKB.load(clinton_kb)
    gold = kb.find(["Q1124", "Q1010", "Q5910", "Q6294"])
    gold = np.append(gold, -1)
    pairs = np.array([[0, 0, 1, 1, 4], [1, 2, 2, 3, 0]])
    targets, has_target = KBRelations(window=5, threshold=0.5).targets(kb, gold, pairs, len(kb.relation_ids))
    r = {relation: i for i, relation in enumerate(kb.relation_ids)}
    n = len(r)
    assert has_target.tolist() == [True, True, True, True, False]
    assert np.flatnonzero(targets[0]).tolist() == [r["P19"]]  # Bill -P19-> Hope
    assert np.flatnonzero(targets[1]).tolist() == [r["P69"]]
    assert not targets[2].any()  # Hope and the school: none
    assert np.flatnonzero(targets[3]).tolist() == [n + r["P551"]]  # Hillary -P551-> Hope, the pair reversed
    table = np.unique(gold[gold >= 0])
    rows = np.searchsorted(table, gold[:4])
    assert (relation_targets(rows, pairs[:, :4], facts_among(kb, table, n), n) == targets[:4]).all()


def test_training_reaches_the_relation_head(clinton_kb):
    nlp = pipeline(clinton_kb)
    heads = wrapped_module(nlp.get_pipe("refined_linker").model.get_ref("heads"))
    before = heads.relations.mlp[0].weight.detach().clone()
    example = Example(clinton_doc(nlp), clinton_doc(nlp, gold=True))
    optimizer = nlp.create_optimizer()
    losses: dict = {}
    for _ in range(3):
        nlp.update([example], sgd=optimizer, losses=losses)
    assert losses["refined_linker_relations"] > 0
    assert not torch.equal(before, heads.relations.mlp[0].weight)


def test_save_load_and_pipe(clinton_kb, tmp_path):
    nlp = pipeline(clinton_kb)
    docs = [clinton_doc(nlp) for _ in range(3)]
    expected = [nlp(doc) for doc in [clinton_doc(nlp) for _ in range(3)]]

    def summary(doc: Doc):
        return (
            [(e.kb_id_, round(e._.kb_score, 6)) for e in doc.ents],
            [(r.head.start, r.relation, r.tail.start, round(r.score, 6)) for r in doc._.relations],
        )

    assert [summary(d) for d in nlp.pipe(docs, batch_size=2)] == [summary(d) for d in expected]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert summary(loaded(clinton_doc(loaded))) == summary(expected[0])
    assert expected[0]._.relations  # the comparison saw relations
    # Docs with relations pickle (worker processes) and go into DocBins.
    copy = pickle.loads(pickle.dumps(expected[0]))
    assert summary(copy) == summary(expected[0]) and copy._.relations[0].head.kb_id_ == "Q1124"
    stored = next(DocBin(store_user_data=True, docs=[expected[0]]).get_docs(nlp.vocab))
    assert summary(stored) == summary(expected[0])


def test_second_round_features_equal_those_computed_with_the_kb_score():
    rng = np.random.default_rng(1)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    candidates = CandidateTensors(
        rows=torch.tensor([[0, 1, 0], [2, 0, 0]]),
        mask=mask,
        priors=torch.rand(2, 3),
        coherence=torch.rand(2, 3, 2),
        types=torch.full((3, 1), -1),
        popularity=torch.rand(3),
        vectors=torch.ones(3, 4),
    )
    kb = torch.as_tensor(rng.random((2, 3)), dtype=torch.float32)
    type_probs, description = torch.rand(2, 5), torch.rand(2, 3)

    def features(values: torch.Tensor) -> torch.Tensor:
        coherence = torch.cat([candidates.coherence, values.unsqueeze(-1)], dim=-1)
        return CandidateScorer(3).features(candidates._replace(coherence=coherence), type_probs, description, None)

    replaced = CandidateScorer(3).with_last_coherence(features(torch.zeros(2, 3)), kb, mask)
    assert torch.allclose(replaced, features(kb))
