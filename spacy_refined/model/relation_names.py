"""Which question tokens name which KB relations.

A relation head that learns one vector per relation knows only the
relations its training questions use; a question about another one ("what
is the recording of Smetana 's appears_in_topic_gallery ?", where no
training question asked for `appears_in_topic_gallery`) gets whatever
relation it learned for that phrasing. But a KB names its relations, and
questions often use those names. `RelationNames` indexes the content words
of the relations' labels once, and gives for a batch of questions the
sparse (question, token, relation) entries where a token's words are the
relation's: the QA heads weigh them by each hop's attention over the
tokens and add them to the hop's relation logits with learned weights, so
that a relation never seen in training is found by its name.

Two values per entry: the share of the token's content words that are
among the relation's label words, and the share of the words of the
label's last segment, the relation's own name after its schema path
("recording" in "music / release track / recording"), that the token has.
Words are lowercased, with a plural "s" stripped; stop words count for
neither side.
"""

import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Sequence, Tuple

import numpy as np
from spacy.attrs import LOWER
from spacy.tokens import Doc

from ..util import concatenated_ranges

# Word characters without "_": "appears_in_topic_gallery" is four words.
_WORD = re.compile(r"[^\W_]+")
# Segments of a label: its schema path ("music  release track  recording",
# from "__music__release_track__recording") or separators such as "/" and ".".
_SEGMENTS = re.compile(r"\s{2,}|__|/|\.")
# Token texts whose matches are kept (the cache is emptied when full).
_MAX_CACHED = 1 << 20


@dataclass
class RelationMatches:
    """Tokens of a batch of questions that name KB relations.

    doc, position (np.ndarray): (E,) the question and the token's position in it.
    relation (np.ndarray): (E,) the graph relation (inverse ones included).
    values (np.ndarray): (E, 2) the share of the token's words in the
        relation's label, and the share of the label's last segment's
        words in the token.
    """

    doc: np.ndarray
    position: np.ndarray
    relation: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> "RelationMatches":
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, np.zeros((0, 2), dtype=np.float32))


class RelationNames:
    """An index from content words to the relations whose labels contain them."""

    def __init__(self, labels: Sequence[str], stop_words: FrozenSet[str]) -> None:
        """labels (Sequence[str]): the label (or ID) of each relation of the
        graph, inverse ones included (they share their relation's words).
        stop_words (FrozenSet[str]): lowercase words that name nothing."""
        self.stop_words = stop_words
        self._words: List[FrozenSet[str]] = []
        self._last: List[FrozenSet[str]] = []
        self._by_word: Dict[str, List[int]] = {}
        for relation, label in enumerate(labels):
            segments = [s for s in _SEGMENTS.split(label.strip()) if s.strip()]
            words = self.words(label)
            self._words.append(words)
            self._last.append(self.words(segments[-1]) if segments else words)
            for word in words:
                self._by_word.setdefault(word, []).append(relation)
        self._token_cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def words(self, text: str) -> FrozenSet[str]:
        """The content words of `text`: lowercased, a plural "s" stripped, no stop words."""
        found = set()
        for word in _WORD.findall(text.lower()):
            if word in self.stop_words:
                continue
            found.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
        return frozenset(found)

    def __call__(self, docs: Sequence[Doc]) -> RelationMatches:
        """The (question, token, relation) entries of `docs` where a token names a relation."""
        sizes = [len(doc) for doc in docs]
        if not sum(sizes):
            return RelationMatches.empty()
        lowers = np.concatenate([doc.to_array([LOWER]).reshape(-1) for doc in docs if len(doc)]).astype(np.uint64)
        distinct, of_token = np.unique(lowers, return_inverse=True)
        strings = docs[0].vocab.strings
        found = [self._token_matches(int(key), strings[int(key)]) for key in distinct.tolist()]
        found_counts = np.array([len(relations) for relations, _ in found], dtype=np.int64)
        counts = found_counts[of_token]
        if not counts.sum():
            return RelationMatches.empty()
        found_starts = np.cumsum(found_counts) - found_counts
        relations = np.concatenate([relations for relations, _ in found])
        values = np.concatenate([values for _, values in found])
        entries = concatenated_ranges(found_starts[of_token], counts)
        owner = np.repeat(np.arange(len(docs)), sizes)
        position = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        tokens = np.repeat(np.arange(len(owner)), counts)
        return RelationMatches(owner[tokens], position[tokens], relations[entries], values[entries])

    def _token_matches(self, key: int, text: str) -> Tuple[np.ndarray, np.ndarray]:
        """The relations a token's text names and the two values of each (cached by its hash)."""
        cached = self._token_cache.get(key)
        if cached is None:
            if len(self._token_cache) >= _MAX_CACHED:
                self._token_cache.clear()
            words = self.words(text)
            relations = sorted({r for word in words for r in self._by_word.get(word, ())})
            values = [
                (len(words & self._words[r]) / len(words), len(words & self._last[r]) / len(self._last[r]))
                for r in relations
            ]
            cached = (np.array(relations, dtype=np.int64), np.array(values, dtype=np.float32).reshape(-1, 2))
            self._token_cache[key] = cached
        return cached
