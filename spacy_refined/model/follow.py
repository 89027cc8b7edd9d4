"""A differentiable knowledge graph: `follow(x, r)` over a KB's facts.

The reified KB of Cohen et al. (2020): with the facts as three sparse 0/1
matrices over the T facts, `M_subj (T x N)`, `M_rel (T x R)` and
`M_obj (T x N)`, one step of graph traversal is

    follow(x, r) = M_obj^T ((M_subj x) * (M_rel r))

for a batch of entity weights `x (B, N)` and relation weights `r (B, R)`:
each fact passes its subject's weight times its relation's weight on to its
object. This module computes it from the KB's subject-sorted fact arrays
(`kb.segment`), never as a dense entities x entities matrix: `M_subj x` is a
gather of the facts' subject columns, `M_obj^T (...)` a scatter-add into
their objects, and both are differentiable, so gradients reach `x` and `r`.

Only the facts whose subject carries weight in a row of `x` are touched, for
that row: the facts are sorted by subject, so those of an entity are a
contiguous range found by offsets. Entity distributions reached from a few
seed entities stay small, and so does the work; the result (and the gradient
with respect to the parameters that produced `x`) is the same as the
whole-graph product. The gradient with respect to `x` itself is computed on
its support (the nonzero entries); elsewhere it is zero, as no upstream
parameter can give weight to an entity without making it part of the support.

Inverse relations: with `inverse=True` the graph also holds each fact
reversed, as relation `R + r`, so that `r (B, 2R)` can follow a relation from
its object back to its subject ("the films directed by X").

The module is shared: the QA component (`model/qa.py`) follows relations
with it, and any other component that reasons over the KB's facts can.
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..kb.store import RefinedKB
from ..util import concatenated_ranges


class FactGraph:
    """The facts of a KB as subject-sorted index tensors, for `follow`.

    n_entities (int): N, the entities (global KB indices `[0, N)`).
    n_relations (int): R, the relations the facts use (relation numbers
        `[0, R)`); with `inverse`, the graph has 2R relations.
    subjects, relations, objects (np.ndarray): The facts, any order.
    inverse (bool): Also hold each fact reversed, as relation `R + r`.
    """

    def __init__(
        self,
        n_entities: int,
        n_relations: int,
        subjects: np.ndarray,
        relations: np.ndarray,
        objects: np.ndarray,
        inverse: bool = True,
    ) -> None:
        subjects, relations, objects = (np.asarray(a, dtype=np.int64) for a in (subjects, relations, objects))
        if not len(subjects) == len(relations) == len(objects):
            raise ValueError("subjects, relations and objects must have the same length")
        if len(subjects) and (
            min(subjects.min(), objects.min()) < 0 or max(subjects.max(), objects.max()) >= n_entities
        ):
            raise ValueError(f"fact entities out of range for a graph of {n_entities} entities")
        if len(relations) and (relations.min() < 0 or relations.max() >= n_relations):
            raise ValueError(f"fact relations out of range for a graph of {n_relations} relations")
        self.n_entities = int(n_entities)
        self.n_base_relations = int(n_relations)
        self.inverse = inverse
        self.n_facts = int(len(subjects))
        if inverse:
            subjects, relations, objects = (
                np.concatenate([subjects, objects]),
                np.concatenate([relations, relations + n_relations]),
                np.concatenate([objects, subjects]),
            )
        order = np.argsort(subjects, kind="stable")
        # int32 halves the memory of a large graph; torch's gather and scatter take it.
        index_type = np.int32 if self.n_entities < 2**31 else np.int64
        self.relations = torch.from_numpy(relations[order].astype(np.int32))
        self.objects = torch.from_numpy(objects[order].astype(index_type))
        offsets = np.searchsorted(subjects[order], np.arange(self.n_entities + 1))
        self.offsets = offsets.astype(np.int64)  # numpy: the gathers of `fact_rows` run there

    @property
    def nbytes(self) -> int:
        """Memory held by the graph's arrays, in bytes."""
        return (
            self.relations.numel() * self.relations.element_size()
            + self.objects.numel() * self.objects.element_size()
            + self.offsets.nbytes
        )

    @property
    def n_relations(self) -> int:
        """The relations of the graph: R, or 2R with inverse relations."""
        return self.n_base_relations * (2 if self.inverse else 1)

    @classmethod
    def from_kb(cls, kb: RefinedKB, inverse: bool = True, n_relations: Optional[int] = None) -> "FactGraph":
        """The facts of all segments of `kb`.

        kb (RefinedKB): The KB.
        inverse (bool): Also hold each fact reversed (relation R + r).
        n_relations (Optional[int]): R; facts with a relation number >= R
            (relations added to the KB after a model was sized) are left out.
            None: the KB's relations.
        RETURNS (FactGraph): The graph.
        """
        n_relations = len(kb.relation_ids) if n_relations is None else n_relations
        parts = [(s.fact_subjects, s.fact_relations, s.fact_objects) for s in kb.segments]
        subjects, relations, objects = (
            np.concatenate([np.asarray(p[i], dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
            for i in range(3)
        )
        known = relations < n_relations
        return cls(len(kb), n_relations, subjects[known], relations[known], objects[known], inverse=inverse)

    def relation_names(self, names: Sequence[str]) -> List[str]:
        """Names of the graph's relations from the base relations' `names`
        (inverse relations get the suffix "^-1")."""
        names = list(names)[: self.n_base_relations]
        return names + [f"{name}^-1" for name in names] if self.inverse else names

    def fact_rows(self, entities: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The facts whose subject is one of `entities` (CPU indices, repeats allowed).

        entities (torch.Tensor): (E,) entity indices.
        RETURNS (Tuple[torch.Tensor, torch.Tensor]): The facts' positions in
            the graph's arrays, and for each the position in `entities` of its subject.
        """
        entities = entities.numpy()
        starts = self.offsets[entities]
        lengths = self.offsets[entities + 1] - starts
        owner = np.repeat(np.arange(len(entities)), lengths)
        return torch.from_numpy(concatenated_ranges(starts, lengths)), torch.from_numpy(owner)

    def follow(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """One step over the graph: `M_obj^T ((M_subj x) * (M_rel r))`.

        x (torch.Tensor): (B, N) entity weights (e.g. distributions).
        r (torch.Tensor): (B, n_relations) relation weights.
        RETURNS (torch.Tensor): (B, N): each entity's weight is the sum, over
            the facts reaching it, of subject weight times relation weight.
        """
        return self.follow_sparse(EntityWeights.from_dense(x), r).to_dense()

    def follow_sparse(self, x: "EntityWeights", r: torch.Tensor) -> "EntityWeights":
        """`follow` for entity weights kept sparse: the work and the memory
        are those of the facts leaving the entities with weight, never of
        the whole graph.

        x (EntityWeights): (B, N) entity weights.
        r (torch.Tensor): (B, n_relations) relation weights.
        RETURNS (EntityWeights): The (B, N) weights one step on.
        """
        n_rows, n_entities = x.shape
        if n_entities != self.n_entities or r.shape[1] != self.n_relations or n_rows != r.shape[0]:
            raise ValueError(
                f"follow: x {tuple(x.shape)} and r {tuple(r.shape)} do not fit a graph of "
                f"{self.n_entities} entities and {self.n_relations} relations"
            )
        device = x.values.device
        facts, owner = self.fact_rows(x.entities.cpu())
        owner = owner.to(device)
        relations = self.relations[facts].to(device).long()
        objects = self.objects[facts].to(device).long()
        rows = x.rows[owner]
        passed = x.values[owner] * r[rows, relations]
        return EntityWeights.coalesce(rows, objects, passed, x.shape)


class EntityWeights(NamedTuple):
    """A batch of entity vectors, sparse: each nonzero entry once, as
    (row, entity, value); the values carry the gradients."""

    rows: torch.Tensor  # (E,) int64
    entities: torch.Tensor  # (E,) int64
    values: torch.Tensor  # (E,) float
    shape: Tuple[int, int]  # (B, N)

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> "EntityWeights":
        """The nonzero entries of a dense (B, N) tensor."""
        rows, entities = torch.nonzero(x.detach()).unbind(1)
        return cls(rows, entities, x[rows, entities], (x.shape[0], x.shape[1]))

    @classmethod
    def coalesce(
        cls, rows: torch.Tensor, entities: torch.Tensor, values: torch.Tensor, shape: Tuple[int, int]
    ) -> "EntityWeights":
        """Entries that may repeat a (row, entity), summed into one each (sorted by row, then entity)."""
        keys = rows * shape[1] + entities
        size = shape[0] * shape[1]
        if len(keys) * 8 > size:  # many entries: a scatter over the dense batch is cheaper than a sort
            present = torch.zeros(size, dtype=torch.bool, device=keys.device)
            present[keys] = True
            unique = torch.nonzero(present).squeeze(1)
            summed = values.new_zeros(size).index_add(0, keys, values)[unique]
        else:
            unique, position = torch.unique(keys, sorted=True, return_inverse=True)
            summed = values.new_zeros(len(unique)).index_add(0, position, values)
        return cls(unique // shape[1], unique % shape[1], summed, shape)

    @classmethod
    def concatenate(cls, parts: Sequence["EntityWeights"], shape: Tuple[int, int]) -> "EntityWeights":
        """The sum of several entity weights of the same shape."""
        return cls.coalesce(
            *(torch.cat([getattr(part, name) for part in parts]) for name in ("rows", "entities", "values")), shape
        )

    @property
    def keys(self) -> torch.Tensor:
        """`row * N + entity` of each entry (sorted once coalesced)."""
        return self.rows * self.shape[1] + self.entities

    def keep(self, mask: torch.Tensor) -> "EntityWeights":
        """The entries where `mask` (E,) is true."""
        return EntityWeights(self.rows[mask], self.entities[mask], self.values[mask], self.shape)

    def top(self, k: int) -> "EntityWeights":
        """Each row's `k` entries of largest value (all of a row with at most k)."""
        if not len(self.values):
            return self
        if int(torch.bincount(self.rows, minlength=self.shape[0]).max()) <= k:
            return self
        order = torch.argsort(self.values.detach(), descending=True, stable=True)
        order = order[torch.argsort(self.rows[order], stable=True)]
        rows = self.rows[order]
        counts = np.bincount(rows.cpu().numpy(), minlength=self.shape[0])
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.keep(order[torch.from_numpy(rank < k).to(order.device)])

    def with_values(self, values: torch.Tensor) -> "EntityWeights":
        """The same entries with other values."""
        return EntityWeights(self.rows, self.entities, values, self.shape)

    def to_dense(self) -> torch.Tensor:
        """The (B, N) dense tensor."""
        n_rows, n_entities = self.shape
        flat = self.values.new_zeros(n_rows * n_entities).index_add(
            0, self.rows * n_entities + self.entities, self.values
        )
        return flat.view(n_rows, n_entities)


def intersect(*xs: Union[torch.Tensor, EntityWeights]) -> Union[torch.Tensor, EntityWeights]:
    """Entities reached by all of several entity vectors: their element-wise
    minimum (Sen et al. 2021), differentiable (the gradient goes to the
    smallest input of each entry).

    xs (Union[torch.Tensor, EntityWeights]): Entity weights of the same
        shape, e.g. (B, N) each: dense tensors, or coalesced `EntityWeights`
        (then only the entries present in all remain).
    RETURNS (Union[torch.Tensor, EntityWeights]): Their element-wise minimum.
    """
    if not xs:
        raise ValueError("intersect needs at least one entity vector")
    result = xs[0]
    for x in xs[1:]:
        if isinstance(result, EntityWeights):
            keys, other = result.keys, x.keys
            position = torch.searchsorted(other, keys).clamp(max=max(len(other) - 1, 0))
            found = other[position] == keys if len(other) else torch.zeros_like(keys, dtype=torch.bool)
            values = torch.minimum(result.values[found], x.values[position[found]])
            result = EntityWeights(result.rows[found], result.entities[found], values, result.shape)
        else:
            result = torch.minimum(result, x)
    return result


def saturate(x: torch.Tensor) -> torch.Tensor:
    """Entity weights above 1 scaled down to 1, differentiably (as
    TransferNet does after each hop): a path reaching an entity through many
    facts counts once, and the weights stay in [0, 1] over the hops."""
    return x / torch.clamp(x.detach(), min=1.0)
