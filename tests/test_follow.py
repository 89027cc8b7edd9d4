"""`follow` over a KB's facts: values and gradients on a hand-computed graph,
inverse relations, intersection, and the graph of a KB built from triples."""

import pytest
import torch

from spacy_refined.kb.builder import KBBuilder, append_segment
from spacy_refined.kb.store import RefinedKB
from spacy_refined.kb.triples import add_triples
from spacy_refined.model.follow import EntityWeights, FactGraph, intersect, saturate

# Entities 0..3, relations 0 ("a") and 1 ("b"):
#   0 -a-> 1, 0 -b-> 2, 1 -a-> 3, 2 -b-> 3, 2 -a-> 3
FACTS = ([0, 0, 1, 2, 2], [0, 1, 0, 1, 0], [1, 2, 3, 3, 3])


@pytest.fixture
def graph() -> FactGraph:
    return FactGraph(4, 2, *FACTS, inverse=True)


def test_follow_values_and_gradients(graph):
    # x: row 0 all on entity 0, row 1 split over all entities (full support,
    # so the gradient with respect to x is the whole-graph one everywhere)
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    # r over a, b, a^-1, b^-1
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.125, 0.125]], requires_grad=True)
    y = graph.follow(x, r)
    # row 0: 0 -a-> 1
    # row 1, by hand: into 0: 1 a^-1 0 (0.2 * 0.125) + 2 b^-1 0 (0.3 * 0.125);
    # into 1: 0 a 1 (0.1 * 0.5) + 3 a^-1 1 (0.4 * 0.125); into 2: 0 b 2 (0.1 * 0.25) + 3 b^-1 2 + 3 a^-1 2 (0.4 * 0.25);
    # into 3: 1 a 3 (0.2 * 0.5) + 2 b 3 (0.3 * 0.25) + 2 a 3 (0.3 * 0.5)
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.0, 0.0],
            [0.0625, 0.1, 0.125, 0.325],
        ]
    )
    assert torch.allclose(y, expected)
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 2.0, 0.5]])
    (y * weights).sum().backward()
    # d/dx[b, s] = sum over facts s -rel-> o of r[b, rel] * w[b, o]; d/dr[b, rel] = sum over its facts of x[b, s] * w[b, o]
    assert torch.allclose(x.grad[0, 0], torch.tensor(1.0 * 2.0 + 0.0 * 3.0))
    assert torch.allclose(
        x.grad[1],
        torch.tensor(
            [
                0.5 * -1.0 + 0.25 * 2.0,  # 0 -a-> 1, 0 -b-> 2
                0.5 * 0.5 + 0.125 * 1.0,  # 1 -a-> 3, 1 -a^-1-> 0
                0.25 * 0.5 + 0.5 * 0.5 + 0.125 * 1.0,  # 2 -b-> 3, 2 -a-> 3, 2 -b^-1-> 0
                0.125 * -1.0 + 0.125 * 2.0 + 0.125 * 2.0,  # 3 -a^-1-> 1, 3 -b^-1-> 2, 3 -a^-1-> 2
            ]
        ),
    )
    assert torch.allclose(r.grad[0], torch.tensor([1.0 * 2.0, 1.0 * 3.0, 0.0, 0.0]))
    assert torch.allclose(
        r.grad[1],
        torch.tensor(
            [
                0.1 * -1.0 + 0.2 * 0.5 + 0.3 * 0.5,  # a: 0->1, 1->3, 2->3
                0.1 * 2.0 + 0.3 * 0.5,  # b: 0->2, 2->3
                0.2 * 1.0 + 0.4 * -1.0 + 0.4 * 2.0,  # a^-1: 1->0, 3->1, 3->2
                0.3 * 1.0 + 0.4 * 2.0,  # b^-1: 2->0, 3->2
            ]
        ),
    )


def test_follow_inverse_relations(graph):
    x = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    # a^-1 from 3: the subjects of the a-facts into 3
    assert graph.follow(x, torch.tensor([[0.0, 0.0, 1.0, 0.0]])).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert graph.follow(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]])).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert graph.relation_names(["a", "b"]) == ["a", "b", "a^-1", "b^-1"]
    forward_only = FactGraph(4, 2, *FACTS, inverse=False)
    assert forward_only.n_relations == 2
    assert forward_only.follow(x, torch.tensor([[1.0, 1.0]])).sum() == 0


def test_follow_gradient_outside_support_is_zero(graph):
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    graph.follow(x, torch.full((1, 4), 0.25)).sum().backward()
    assert x.grad[0, 0] == 0.5 and x.grad[0, 1:].abs().sum() == 0


def test_follow_sparse_matches_dense(graph):
    x = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.2, 0.0, 0.0, 0.8]])
    r = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    sparse = graph.follow_sparse(EntityWeights.from_dense(x), r)
    assert torch.allclose(sparse.to_dense(), graph.follow(x, r))


def test_follow_rejects_wrong_shapes(graph):
    with pytest.raises(ValueError, match="do not fit"):
        graph.follow(torch.zeros(1, 5), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="do not fit"):
        graph.follow(torch.zeros(1, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="out of range"):
        FactGraph(2, 1, [0], [0], [2])


def test_intersect_is_elementwise_minimum():
    a = torch.tensor([[0.9, 0.2, 0.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.5, 0.7, 0.3, 0.0]], requires_grad=True)
    both = intersect(a, b)
    assert torch.allclose(both, torch.tensor([[0.5, 0.2, 0.0, 0.0]]))
    both.sum().backward()
    assert a.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert b.grad[0, 0] == 1.0
    sparse = intersect(EntityWeights.from_dense(a.detach()), EntityWeights.from_dense(b.detach()))
    assert torch.allclose(sparse.to_dense(), intersect(a, b).detach())
    assert sparse.entities.tolist() == [0, 1]  # only the entities reached by both


def test_saturate():
    x = torch.tensor([0.5, 1.0, 3.0], requires_grad=True)
    y = saturate(x)
    assert y.tolist() == [0.5, 1.0, 1.0]
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, 1.0, 1.0 / 3.0]))


def test_graph_from_kb_built_from_triples(tmp_path):
    triples = tmp_path / "kb.tsv"
    triples.write_text(
        "Titanic\tdirected_by\tJames Cameron\nAvatar\tdirected_by\tJames Cameron\nTitanic\trelease_year\t1997\n"
    )
    with KBBuilder(tmp_path / "kb", progress=False) as builder:
        add_triples(builder, triples)
    kb = RefinedKB.load(tmp_path / "kb")
    graph = FactGraph.from_kb(kb)
    assert graph.n_entities == len(kb) == 4 and graph.n_facts == 3 and graph.n_relations == 4
    directed_by_inverse = torch.zeros(1, 4)
    directed_by_inverse[0, 2 + kb.relation_ids.index("directed_by")] = 1.0
    x = torch.zeros(1, len(kb))
    x[0, kb.index("James Cameron")] = 1.0
    films = graph.follow(x, directed_by_inverse)
    assert sorted(kb.entity_id(i) for i in torch.nonzero(films[0]).squeeze(1).tolist()) == ["Avatar", "Titanic"]
    # an entity added with `kb add` is in the graph of the reloaded KB
    append_segment(tmp_path / "kb", [{"id": "Aliens", "label": "Aliens", "facts": [["directed_by", "James Cameron"]]}])
    kb.reload()
    graph = FactGraph.from_kb(kb)
    x = torch.zeros(1, len(kb))
    x[0, kb.index("James Cameron")] = 1.0
    films = graph.follow(x, directed_by_inverse)
    assert kb.index("Aliens") in torch.nonzero(films[0]).squeeze(1).tolist()
