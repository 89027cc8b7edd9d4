"""Mention sources: where the spans that a component links come from.

A component chooses its source in its config, as spaCy's `entity_linker`
chooses its `get_candidates`; sources combine:

    [components.refined_linker.mentions]
    @misc = "spacy_refined.CombinedMentions.v1"

    [components.refined_linker.mentions.*.tagger]
    @misc = "spacy_refined.TaggerMentions.v1"

    [components.refined_linker.mentions.*.aliases]
    @misc = "spacy_refined.AliasMentions.v1"

Every span a source proposes goes through the same candidate scoring, whose
NIL option turns down the spurious ones; each span carries its `Origin`, and
the scorer sees which spans only the KB's aliases proposed.
"""

from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry

from ..kb.candidates import CandidateKB
from ..kb.matcher import AliasMatcher
from ..model.types import Mentions, Origin

# spaCy NER labels of numbers and times: linked by no KB, left alone.
NUMERIC_LABELS = ("DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL")
_TAGGER = {"@misc": "spacy_refined.TaggerMentions.v1"}
_ALIASES = {"@misc": "spacy_refined.AliasMentions.v1"}
# The sources by name, as configs: the linker's default is "tagger+aliases"; `evaluate --mentions` picks one.
MENTION_SOURCES: Dict[str, Dict[str, Any]] = {
    "tagger": _TAGGER,
    "aliases": _ALIASES,
    "tagger+aliases": {"@misc": "spacy_refined.CombinedMentions.v1", "*": {"tagger": _TAGGER, "aliases": _ALIASES}},
}


class MentionSource(Protocol):
    """Proposes the mentions of a batch of docs.

    `uses_tagger`: whether it needs the BIO head's mentions (the model then
    tags the docs and passes them in); `alias_matcher`: the matcher whose
    spans it adds, if any (training shows the scorer such spans too).
    """

    uses_tagger: bool
    alias_matcher: Optional[AliasMatcher]

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions: ...


class TaggerSource:
    """The mentions the component's trained BIO head detects."""

    uses_tagger = True
    alias_matcher = None

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions:
        return tagged if tagged is not None else Mentions.empty()


class EntsSource:
    """The spans of `doc.ents`, but those with a label in `skip_labels`."""

    uses_tagger = False
    alias_matcher = None

    def __init__(self, skip_labels: Iterable[str]) -> None:
        self.skip_labels = set(skip_labels)

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions:
        rows = [
            (i, ent.start, ent.end, 0)
            for i, doc in enumerate(docs)
            for ent in doc.ents
            if ent.label_ not in self.skip_labels
        ]
        return Mentions.from_rows(rows, Origin.ENTS)


class SpanGroupSource:
    """The spans of the span group `doc.spans[key]` (they may overlap)."""

    uses_tagger = False
    alias_matcher = None

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions:
        rows = [(i, span.start, span.end, 0) for i, doc in enumerate(docs) for span in doc.spans.get(self.key, [])]
        return Mentions.from_rows(rows, Origin.SPANS)


class AliasSource:
    """The longest matches of the KB's aliases in the text (see `kb.matcher`)."""

    uses_tagger = False

    def __init__(self, matcher: AliasMatcher) -> None:
        self.alias_matcher = matcher

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions:
        matches = self.alias_matcher(kb, docs)
        n = len(matches)
        return Mentions(
            matches.doc, matches.start, matches.end, np.zeros(n, "int64"), np.full(n, int(Origin.ALIASES), "int64")
        )


class CombinedSource:
    """The first source's mentions, then each next source's that overlap none taken so far."""

    def __init__(self, sources: Sequence[MentionSource]) -> None:
        if not sources:
            raise ValueError("CombinedMentions.v1 needs at least one source")
        self.sources = list(sources)
        self.uses_tagger = any(source.uses_tagger for source in self.sources)
        matchers = [source.alias_matcher for source in self.sources if source.alias_matcher is not None]
        self.alias_matcher = matchers[0] if matchers else None

    def __call__(self, docs: Sequence[Doc], kb: CandidateKB, tagged: Optional[Mentions]) -> Mentions:
        lengths = np.array([len(doc) for doc in docs], dtype="int64")
        doc_offsets = np.r_[0, np.cumsum(lengths)]
        taken: List[Mentions] = []
        for source in self.sources:
            found = source(docs, kb, tagged)
            if taken:
                found = found.subset(~found.overlapping(Mentions.concatenate(taken), doc_offsets))
            taken.append(found)
        return Mentions.concatenate(taken)


@registry.misc("spacy_refined.TaggerMentions.v1")
def make_tagger_mentions() -> MentionSource:
    """The mentions the component's BIO head detects (trained on the gold mentions).

    RETURNS (MentionSource): The source.
    """
    return TaggerSource()


@registry.misc("spacy_refined.EntMentions.v1")
def make_ent_mentions(skip_labels: Sequence[str] = NUMERIC_LABELS) -> MentionSource:
    """The spans of `doc.ents`, from an upstream NER or the user; linked
    mentions keep their labels.

    skip_labels (Sequence[str]): Labels of ents that are not linked (numbers and
        times by default); they stay in `doc.ents`.
    RETURNS (MentionSource): The source.
    """
    return EntsSource(skip_labels)


@registry.misc("spacy_refined.SpanGroupMentions.v1")
def make_span_group_mentions(key: str = "mentions") -> MentionSource:
    """Given spans: those of the span group `doc.spans[key]`, which may
    overlap (set `write_ents = false` on the component for overlapping ones).

    key (str): The span group.
    RETURNS (MentionSource): The source.
    """
    return SpanGroupSource(key)


@registry.misc("spacy_refined.AliasMentions.v1")
def make_alias_mentions(
    max_words: int = 6, min_prior: float = 0.1, require_capital: bool = True, skip_stop_words: bool = True
) -> MentionSource:
    """The longest matches of the KB's normalised aliases in the text: the
    source that needs no training, and that finds the names a tagger trained
    on other text misses.

    max_words (int): The longest span tried, in tokens.
    min_prior (float): The smallest prior P(e | alias) of an alias's best
        candidate for a match to be proposed.
    require_capital (bool): Only spans that start and end with a token that
        is not lower case; false for text without case.
    skip_stop_words (bool): Never propose a span made only of stop words
        ("The", "May"; acronyms such as "US" are not stop words).
    RETURNS (MentionSource): The source.
    """
    return AliasSource(AliasMatcher(max_words, min_prior, require_capital, skip_stop_words))


@registry.misc("spacy_refined.CombinedMentions.v1")
def make_combined_mentions(*sources: MentionSource) -> MentionSource:
    """Several sources in order of trust: all mentions of the first, then
    those of each next source that overlap none taken so far (e.g. the
    tagger's mentions, plus the alias matches beside them). In the config,
    the sources are its positional arguments: `[components.NAME.mentions.*.tagger]`.

    RETURNS (MentionSource): The source.
    """
    return CombinedSource(sources)
