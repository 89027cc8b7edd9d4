"""Candidate generation: which KB entities the mentions of a document may refer to.

A candidate generator takes the KB, the mention texts of one document in
document order and the number of candidates to keep per mention, and returns
the candidates in CSR form. Components choose one in their config, as
spaCy's `entity_linker` chooses its `get_candidates`:

    [components.NAME.get_candidates]
    @misc = "spacy_refined.PriorCandidates.v1"
    person_names = true
"""

import bisect
from typing import Callable, Dict, List, Optional, Protocol, Sequence

import numpy as np
from spacy.util import registry

from .normalize import normalize_alias
from .reader import CandidateCSR


class CandidateKB(Protocol):
    """What the generators use of a KB: `KBReader` (and so `RefinedKB`) provides it."""

    person_type_index: int  # the type of people in the type inventory (-1: none)

    def candidates(self, mentions: Sequence[str], k: Optional[int] = None) -> CandidateCSR: ...

    def type_matrix(self, indices: np.ndarray) -> np.ndarray: ...


CandidateGenerator = Callable[[CandidateKB, Sequence[str], Optional[int]], CandidateCSR]


@registry.misc("spacy_refined.PriorCandidates.v1")
def make_prior_candidates(person_names: bool = True) -> CandidateGenerator:
    """Candidates by prior P(entity | mention text), the KB's top k.

    person_names (bool): Apply the person-name rule (`person_name_candidates`):
        a repeated first name or surname is the person named in full.
    RETURNS (CandidateGenerator): (kb, one document's mention texts in
        document order, k) -> their candidates; k None or 0 keeps the KB's
        `max_candidates`.
    """
    return person_name_candidates if person_names else prior_candidates


def prior_candidates(kb: CandidateKB, mentions: Sequence[str], k: Optional[int] = None) -> CandidateCSR:
    """The top-k candidates of each mention text by prior (`RefinedKB.candidates`)."""
    return kb.candidates(mentions, k)


def person_name_candidates(kb: CandidateKB, mentions: Sequence[str], k: Optional[int] = None) -> CandidateCSR:
    """Candidates for the mentions of one document, in order of appearance,
    with the person-name rule.

    A single first name or surname after a full name whose best candidate is
    a person gets the nearest such full name's person candidates (with the
    full name's priors) instead of its own. A surname before any such full
    name (a headline: "Timberlake, Diaz split") gets those of the first full
    name that ends with it; a first name before one does not ("Paris" before
    "Paris Hilton"). A name repeated in a document is, far more often than
    not, the person named in full, and keeping the name's own candidates lets
    a familiar namesake win ("Ford" the carmaker over Gerald Ford). Without a
    person type in the KB, these are the prior candidates.

    kb (CandidateKB): The KB (a `RefinedKB`).
    mentions (Sequence[str]): The mention texts of one document, in order.
    k (Optional[int]): Candidates per mention; None or 0 for the KB's `max_candidates`.
    RETURNS (CandidateCSR): The candidates.
    """
    batch = kb.candidates(mentions, k)
    person_type = kb.person_type_index
    if person_type < 0 or len(mentions) < 2:
        return batch
    is_person = kb.type_matrix(batch.entities)[:, person_type] > 0 if len(batch.entities) else np.zeros(0, bool)
    names = [normalize_alias(text).split() for text in mentions]
    full_names: Dict[str, List[int]] = {}  # first name or surname -> the full names with it, in order
    surnames: Dict[str, int] = {}  # surname -> the first full name that ends with it
    for m, tokens in enumerate(names):
        if len(tokens) >= 2 and batch.offsets[m + 1] > batch.offsets[m] and is_person[batch.offsets[m]]:
            for name in dict.fromkeys((tokens[0], tokens[-1])):
                full_names.setdefault(name, []).append(m)
            surnames.setdefault(tokens[-1], m)
    sources: Dict[int, int] = {}
    for m, tokens in enumerate(names):
        if len(tokens) != 1:
            continue
        before = bisect.bisect_left(full_names.get(tokens[0], []), m)
        if before:
            sources[m] = full_names[tokens[0]][before - 1]
        elif tokens[0] in surnames:
            sources[m] = surnames[tokens[0]]
    if not sources:
        return batch
    rows = []
    for m in range(len(batch)):
        entities, priors = batch[m]
        if m in sources:
            source = sources[m]
            person = is_person[batch.offsets[source] : batch.offsets[source + 1]]
            entities, priors = batch[source][0][person], batch[source][1][person]
        rows.append((entities, priors))
    return CandidateCSR.from_rows(rows)
