"""Alias matching: the longest spans of a text that are aliases of KB entities.

The matcher needs no index of its own. A span's key is the KB's key of its
normalised text (`normalize.alias_key`), so the KB's sorted, memory-mapped
alias keys are the automaton: a batch's candidate spans are hashed and
looked up in them at once (`RefinedKB.candidates_of_keys`, a binary search
per key), whatever the size of the KB's alias table, and nothing is held in
memory per alias.

Only spans that could be names are hashed: they start and end with a token
that is not lower case (a capital letter or a digit), contain a letter, no
whitespace token and no punctuation followed by a space ("Columbus, Ohio"
is two names, "Guinea-Bissau" one), do not start with "the" (which the
normalisation drops) and are at most `max_words` tokens long. A match is
proposed when its best candidate's prior reaches `min_prior` (an alias
shared by many entities, none of them usual, is no evidence of a mention)
and it is not made of stop words ("The", "May", "It"). Overlapping matches
resolve to the longest, then the first. As in the candidate generator's
person-name rule, a lone first name or surname of a person matched in full
in the same text is a match too ("Timberlake" after "Justin Timberlake").
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from spacy.attrs import IS_LOWER, IS_PUNCT, IS_SPACE, IS_STOP, IS_TITLE, IS_UPPER, LENGTH, ORTH, SPACY
from spacy.tokens import Doc

from .candidates import CandidateKB
from .hashing import string_key
from .normalize import normalize_alias


@dataclass
class AliasMatches:
    """Matches in a batch of docs, sorted by (doc, start): token spans, and
    the best candidate (KB index) of each match and its prior."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    entity: np.ndarray
    prior: np.ndarray

    def __len__(self) -> int:
        return len(self.doc)


class AliasMatcher:
    """Finds the longest non-overlapping KB aliases in tokenised text.

    max_words (int): The longest span tried, in tokens.
    min_prior (float): The smallest prior P(e | alias) of an alias's best
        candidate for the alias to be proposed.
    require_capital (bool): Only spans that start and end with a token that
        is not lower case; false for text without case (all spans of letters
        are then tried, at a higher cost).
    skip_stop_words (bool): Never propose a span made only of stop words.
    """

    def __init__(
        self, max_words: int = 6, min_prior: float = 0.1, require_capital: bool = True, skip_stop_words: bool = True
    ) -> None:
        if max_words < 1:
            raise ValueError(f"max_words must be at least 1, not {max_words}")
        if not 0.0 <= min_prior <= 1.0:
            raise ValueError(f"min_prior must be within [0, 1], not {min_prior}")
        self.max_words = max_words
        self.min_prior = min_prior
        self.require_capital = require_capital
        self.skip_stop_words = skip_stop_words
        self._norms: Dict[int, Tuple[str, bool]] = {}  # ORTH -> (normalised token, has a letter), as seen

    def __call__(self, kb: CandidateKB, docs: Sequence[Doc]) -> AliasMatches:
        """The matches in `docs` (a batch: one KB lookup for all of them)."""
        spans: List[Tuple[int, int, int]] = []
        keys: List[int] = []
        for i, doc in enumerate(docs):
            for start, end, key in self._candidate_spans(doc):
                spans.append((i, start, end))
                keys.append(key)
        if not spans:
            return AliasMatches(*(np.zeros(0, dtype="int64") for _ in range(4)), np.zeros(0, dtype="float32"))
        found = kb.candidates_of_keys(np.array(keys, dtype=np.uint64), 1)
        lengths = found.lengths
        prior = np.zeros(len(keys), dtype="float32")
        prior[lengths > 0] = found.priors
        best = np.full(len(keys), -1, dtype="int64")
        best[lengths > 0] = found.entities
        keep = (lengths > 0) & (prior >= self.min_prior)
        rows = np.array(spans, dtype="int64")[keep]
        matches = _longest(np.c_[rows, best[keep]], prior[keep])
        return self._with_person_names(kb, docs, matches)

    def _with_person_names(self, kb: CandidateKB, docs: Sequence[Doc], matches: "AliasMatches") -> "AliasMatches":
        """Add the lone first names and surnames of the persons matched in full."""
        person = kb.person_type_index
        full = matches.end - matches.start >= 2
        if person < 0 or not full.any():
            return matches
        is_person = np.zeros(len(matches), dtype=bool)
        is_person[full] = kb.type_matrix(matches.entity[full])[:, person] > 0
        added: List[Tuple[int, int, int, int]] = []
        added_prior: List[float] = []
        for i in np.unique(matches.doc[is_person]).tolist():
            doc = docs[i]
            in_doc = np.flatnonzero(matches.doc == i)
            names = {}
            for m in in_doc[is_person[in_doc]].tolist():
                for t in (matches.start[m], matches.end[m] - 1):
                    names.setdefault(self._norm(doc[int(t)].orth, doc)[0], m)
            covered = np.zeros(len(doc), dtype=bool)
            for m in in_doc.tolist():
                covered[matches.start[m] : matches.end[m]] = True
            attrs = doc.to_array([ORTH, IS_TITLE])
            for t in np.flatnonzero(~covered & (attrs[:, 1] > 0)).tolist():
                m = names.get(self._norm(int(attrs[t, 0]), doc)[0])
                if m is not None:
                    added.append((i, t, t + 1, int(matches.entity[m])))
                    added_prior.append(float(matches.prior[m]))
        if not added:
            return matches
        rows = np.r_[np.c_[matches.doc, matches.start, matches.end, matches.entity], np.array(added, dtype="int64")]
        return _longest(rows, np.r_[matches.prior, np.array(added_prior, dtype="float32")])

    def _candidate_spans(self, doc: Doc) -> List[Tuple[int, int, int]]:
        """(start, end, alias key) of the spans of `doc` that could be names."""
        n = len(doc)
        if not n:
            return []
        attrs = doc.to_array([ORTH, IS_LOWER, IS_SPACE, IS_STOP, IS_PUNCT, IS_UPPER, LENGTH, SPACY])
        normalised = [self._norm(orth, doc) for orth in attrs[:, 0].tolist()]
        norms = [norm for norm, _ in normalised]
        has_norm = np.array([bool(norm) for norm in norms])
        has_letter = np.array([letter for _, letter in normalised])
        # Whitespace and punctuation before a space end a name.
        breaks = (attrs[:, 2] > 0) | ((attrs[:, 4] > 0) & (attrs[:, 7] > 0))
        edge = has_norm & ~breaks
        if self.require_capital:
            edge &= attrs[:, 1] == 0
        # A stop word is no name, unless written as an acronym ("US", "WHO").
        acronym = (attrs[:, 5] > 0) & (attrs[:, 6] >= 2)
        stop = (attrs[:, 3] > 0) & ~acronym if self.skip_stop_words else np.zeros(n, dtype=bool)
        # Prefix counts, so that a span's breaks, letters and content words are differences.
        spaces = np.r_[0, np.cumsum(breaks)]
        letters = np.r_[0, np.cumsum(has_letter)]
        content = np.r_[0, np.cumsum(has_norm & ~stop)]
        starts = np.flatnonzero(edge & (np.array(norms, dtype=object) != "the"))
        result = []
        for width in range(1, self.max_words + 1):
            s = starts[starts + width <= n]
            e = s + width
            ok = edge[e - 1] & (spaces[e] == spaces[s]) & (letters[e] > letters[s]) & (content[e] > content[s])
            for start, end in zip(s[ok].tolist(), e[ok].tolist()):
                result.append((start, end, string_key(" ".join(norm for norm in norms[start:end] if norm))))
        return result

    def _norm(self, orth: int, doc: Doc) -> Tuple[str, bool]:
        """A token's normalised text, and whether it has a letter."""
        known = self._norms.get(orth)
        if known is None:
            norm = normalize_alias(doc.vocab.strings[orth])
            known = (norm, any(c.isalpha() for c in norm))
            if len(self._norms) < 1_000_000:  # bounded: a vocabulary's worth
                self._norms[orth] = known
        return known


def _longest(rows: np.ndarray, prior: np.ndarray) -> AliasMatches:
    """Of overlapping (doc, start, end, entity) spans, keep the longest, then the first."""
    order = np.lexsort((rows[:, 1], -(rows[:, 2] - rows[:, 1]), rows[:, 0]))
    taken: Dict[int, np.ndarray] = {}
    keep = np.zeros(len(rows), dtype=bool)
    for i in order.tolist():
        doc, start, end, _ = rows[i].tolist()
        used = taken.get(doc)
        if used is None:
            used = taken[doc] = np.zeros(0, dtype=bool)
        if len(used) < end:
            used = taken[doc] = np.r_[used, np.zeros(end - len(used), dtype=bool)]
        if not used[start:end].any():
            used[start:end] = True
            keep[i] = True
    rows, prior = rows[keep], prior[keep]
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    return AliasMatches(rows[order, 0], rows[order, 1], rows[order, 2], rows[order, 3], prior[order])
