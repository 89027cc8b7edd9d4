"""Document coherence: how well a candidate fits the other mentions of its
document, by the KB's facts.

A candidate that a fact connects to likely candidates of other mentions is
likely itself ("Jordan" next to "Chicago Bulls"). For every candidate of a
document this gives two features in [0, 1]:

* prior-weighted: over the document's other mention groups, the mean prior
  mass of their candidates connected to it (each group contributes at most
  1, its candidates' priors summing to at most 1);
* any: the share of the other mention groups with at least one candidate
  connected to it.

Mentions with the same normalised text form one group (the same ambiguity,
repeated), and a group never supports its own candidates, so sibling
candidates of one mention (e.g. a country and its football team) do not
lift each other.
"""

from typing import Callable, Sequence

import numpy as np
from spacy.util import registry

from ..kb.candidates import CandidateCSR
from ..kb.normalize import alias_keys
from ..kb.store import RefinedKB
from ..util import concatenated_ranges, sorted_positions

# The number of coherence features per candidate (the scorer's input width depends on it).
N_COHERENCE = 2
CoherenceFeatures = Callable[[RefinedKB, Sequence[str], CandidateCSR], np.ndarray]


@registry.misc("spacy_refined.FactCoherence.v1")
def make_fact_coherence() -> CoherenceFeatures:
    """Coherence by the KB's facts (`document_coherence`), for the linker's
    `coherence` setting: (kb, a document's mention texts, their candidates)
    -> features (n_candidates, N_COHERENCE)."""

    def coherence(kb: RefinedKB, texts: Sequence[str], candidates: CandidateCSR) -> np.ndarray:
        return document_coherence(kb, texts, candidates.lengths, candidates.entities, candidates.priors)

    return coherence


def document_coherence(
    kb: RefinedKB, texts: Sequence[str], lengths: np.ndarray, entities: np.ndarray, priors: np.ndarray
) -> np.ndarray:
    """Coherence features (n_candidates, N_COHERENCE) of one document's candidates.

    texts: the document's mention texts; lengths: their numbers of candidates;
    entities, priors: the candidates (KB indices, P(e|m)), mention after mention.
    """
    features = np.zeros((len(entities), N_COHERENCE), dtype=np.float32)
    _, mention_group = np.unique(np.array(alias_keys(texts), dtype=np.uint64), return_inverse=True)
    slot_group = np.repeat(mention_group.reshape(-1), lengths)
    n_groups = len(np.unique(slot_group))
    if n_groups < 2:
        return features
    unique, inverse = np.unique(entities, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = len(unique)
    source, target = kb.links_among(unique)
    if not len(source):
        return features
    # One row per (group, entity): its prior in that group.
    row_keys, first = np.unique(slot_group * n + inverse, return_index=True)
    row_entity, row_prior = row_keys % n, priors[first]
    # Support: every link (a -> b) carries each row (g, a) to (g, b).
    by_entity = np.argsort(row_entity, kind="stable")
    entity_order = row_entity[by_entity]
    begin = np.searchsorted(entity_order, source, side="left")
    count = np.searchsorted(entity_order, source, side="right") - begin
    carried = by_entity[concatenated_ranges(begin, count)]
    support_keys = (row_keys[carried] // n) * n + np.repeat(target, count)
    keys, key_of = np.unique(support_keys, return_inverse=True)
    support = np.minimum(np.bincount(key_of.reshape(-1), weights=row_prior[carried], minlength=len(keys)), 1.0)
    key_entity = keys % n
    total_mass = np.bincount(key_entity, weights=support, minlength=n)
    total_groups = np.bincount(key_entity, minlength=n)
    # Each slot: the support of all groups minus its own group's.
    slot_keys = slot_group * n + inverse
    at = sorted_positions(keys, slot_keys)
    own = at >= 0
    own_mass = np.where(own, support[at], 0.0)
    others = n_groups - 1
    features[:, 0] = (total_mass[inverse] - own_mass) / others
    features[:, 1] = (total_groups[inverse] - own) / others
    return features
