"""Disambiguation that reasons over the KB's facts (after Ayoola et al.,
NAACL 2022, "Improving entity disambiguation by reasoning over a knowledge
base"): a relation head over pairs of mentions, and for every candidate a KB
score, the expected number of KB facts consistent with what the text states.

For mentions i < j of a document, `RelationHead` gives independent
(sigmoid) probabilities `q_ij` over 2R relations, in the layout of
`FactGraph`'s inverse relations: column r is the fact (e_i, r, e_j), column
R + r the fact (e_j, r, e_i); all columns low is "none". Sigmoids rather than
a softmax, as TransferNet chose: two mentions can be linked by several facts.

The KB score of candidate a of mention i is

    kb(i, a) = sum_j sum_b p_j(b) sum_r q_ij(r) [(a, r, b) in the KB]

(r over both directions), with p_j the probabilities of mention j's
candidates from a first scoring round without the KB score. It is one
`follow` per ordered pair over the graph of the facts among the batch's
candidates only (a few hundred entities): from j's candidates weighted by
p_j, along the relations the text states between j and i, read at i's
candidates. The sum over the pairs is saturated to [0, 1] (one confirmed
fact is enough; many pairs stating the same fact do not outweigh the
prior). The gradient reaches the relation head through q; p is fixed.
"""

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..util import concatenated_ranges
from .follow import EntityWeights, FactGraph, saturate


class RelationInputs(NamedTuple):
    """What the relation head and the KB score need of a batch (numpy).

    `pairs` (2, P): mention indices (head i < tail j) of the pairs within the
    window; `between` (2, P): the flat batch token range [start, end) between
    the two mentions (empty when adjacent); `facts` (3, F): the facts among
    the batch's candidates as (subject, relation, object), entities as rows
    of the batch's entity table (`Candidates.unique`), relations in [0, R).
    """

    pairs: np.ndarray
    between: np.ndarray
    facts: np.ndarray


class RelationTensors(NamedTuple):
    """`RelationInputs` as tensors on the heads' device."""

    pairs: torch.Tensor
    between: torch.Tensor
    facts: torch.Tensor

    @classmethod
    def from_inputs(cls, inputs: RelationInputs, device: torch.device) -> "RelationTensors":
        return cls(*(torch.as_tensor(np.asarray(a, dtype="int64"), device=device) for a in inputs))


class RelationHead(nn.Module):
    """Pairs of mentions -> relation logits (P, 2R), from the two mention
    vectors, the mean of the token vectors between them and the log of their
    distance in tokens."""

    def __init__(self, mention_width: int, token_width: int, hidden_width: int, n_relations: int, dropout: float):
        super().__init__()
        self.n_relations = n_relations
        self.mlp = nn.Sequential(
            nn.Linear(2 * mention_width + token_width + 1, hidden_width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_width, 2 * n_relations),
        )
        with torch.no_grad():
            self.mlp[-1].bias.fill_(-4.0)  # facts between mentions are rare: start from a small probability

    def forward(self, mentions: torch.Tensor, tokens: torch.Tensor, relations: RelationTensors) -> torch.Tensor:
        """Relation logits of the pairs.

        mentions (torch.Tensor): mention vectors, (n_mentions, mention_width).
        tokens (torch.Tensor): the batch's token vectors, (n_tokens, token_width).
        relations (RelationTensors): the pairs and the token ranges between them.
        RETURNS (torch.Tensor): (P, 2R).
        """
        head, tail = relations.pairs
        start, end = relations.between
        sums = torch.cat([tokens.new_zeros((1, tokens.shape[1])), torch.cumsum(tokens, dim=0)])
        gap = (end - start).unsqueeze(1).to(tokens.dtype)
        between = (sums[end] - sums[start]) / gap.clamp(min=1.0)
        features = torch.cat([mentions[head], mentions[tail], between, torch.log1p(gap)], dim=1)
        return self.mlp(features)


def kb_scores(
    relation_probs: torch.Tensor,
    relations: RelationTensors,
    candidate_rows: torch.Tensor,
    candidate_probs: torch.Tensor,
    mask: torch.Tensor,
    n_entities: int,
) -> torch.Tensor:
    """The KB score of every candidate (see the module docstring).

    relation_probs (torch.Tensor): q (P, 2R) of the pairs.
    relations (RelationTensors): the pairs and the facts among the candidates.
    candidate_rows (torch.Tensor): (n_mentions, k) rows of the batch's
        entity table.
    candidate_probs (torch.Tensor): p (n_mentions, k) (padding: any value).
    mask (torch.Tensor): the real candidates, (n_mentions, k).
    n_entities (int): the size of the batch's entity table.
    RETURNS (torch.Tensor): (n_mentions, k) in [0, 1]; 0 for padding.
    """
    n_mentions, k = candidate_rows.shape
    scores = relation_probs.new_zeros((n_mentions, k))
    n_pairs = relation_probs.shape[0]
    if not n_pairs or not relations.facts.shape[1]:
        return scores
    n_base = relation_probs.shape[1] // 2
    facts = relations.facts.cpu().numpy()
    graph = FactGraph(n_entities, n_base, facts[0], facts[1], facts[2], inverse=True)
    head, tail = relations.pairs
    # Row p follows from the tail's candidates to the head's; row P + p the
    # other way. Following from b reaches a along the reversed relation, so
    # a row's relation weights are q with its two halves swapped when its
    # target is the pair's head, and q itself when its target is the tail.
    swapped = torch.cat([relation_probs[:, n_base:], relation_probs[:, :n_base]], dim=1)
    weights = torch.cat([swapped, relation_probs])
    sources, targets = torch.cat([tail, head]), torch.cat([head, tail])
    # Only candidates with a fact among the batch's candidates pass anything on.
    offsets = torch.from_numpy(graph.offsets).to(mask.device)
    has_facts = offsets[1:] > offsets[:-1]
    source_mask = mask[sources] & has_facts[candidate_rows[sources]]
    rows = torch.arange(2 * n_pairs, device=mask.device).unsqueeze(1).expand(-1, k)[source_mask]
    x = EntityWeights.coalesce(
        rows, candidate_rows[sources][source_mask], candidate_probs[sources][source_mask], (2 * n_pairs, n_entities)
    )
    reached = graph.follow_sparse(x, weights)
    if not len(reached.values):
        return scores
    wanted = torch.arange(2 * n_pairs, device=mask.device).unsqueeze(1) * n_entities + candidate_rows[targets]
    keys = reached.keys
    position = torch.searchsorted(keys, wanted).clamp(max=len(keys) - 1)
    found = (keys[position] == wanted) & mask[targets]
    values = torch.where(found, reached.values[position], torch.zeros_like(reached.values[position]))
    scores = scores.index_add(0, targets, values)
    return saturate(scores) * mask


def relation_targets(gold: np.ndarray, pairs: np.ndarray, facts: np.ndarray, n_base: int) -> np.ndarray:
    """Distant supervision: the multi-label targets (P, 2R) of the pairs
    from the KB facts between their gold entities ("none": all 0).

    gold (np.ndarray): each mention's gold entity as a row of an entity
        table (-1: unknown).
    pairs (np.ndarray): (2, P) head and tail mentions.
    facts (np.ndarray): (3, F) the facts among the table's entities
        (subject row, relation, object row), relations in [0, R).
    n_base (int): R.
    RETURNS (np.ndarray): float32 (P, 2R).
    """
    head, tail = gold[pairs[0]], gold[pairs[1]]
    targets = np.zeros((pairs.shape[1], 2 * n_base), dtype="float32")
    n = int(max(gold.max(initial=0), facts[0].max(initial=0), facts[2].max(initial=0))) + 1
    order = np.argsort(facts[0] * n + facts[2], kind="stable")
    fact_keys, fact_relations = (facts[0] * n + facts[2])[order], facts[1][order]
    for direction, (a, b) in enumerate(((head, tail), (tail, head))):
        keys = np.where((a >= 0) & (b >= 0), a * n + b, -1)
        left = np.searchsorted(fact_keys, keys, side="left")
        counts = np.where(keys >= 0, np.searchsorted(fact_keys, keys, side="right") - left, 0)
        rows = np.repeat(np.arange(len(keys)), counts)
        targets[rows, fact_relations[concatenated_ranges(left, counts)] + direction * n_base] = 1.0
    return targets
