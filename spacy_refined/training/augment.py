"""Training-data augmentation that keeps the gold links.

`spacy_refined.whitespace_augmenter.v1` inserts line breaks and runs of spaces
between the tokens of training documents. Corpora such as AIDA-CoNLL are
plain token sequences, while real text (news pages, MSNBC) has line breaks
that spaCy's tokenizer turns into whitespace tokens: a model that has never
seen them reads the words around them as sentence starts or headlines and
tags "Thousands" or "Instead" after a line break as a mention. spaCy's own
whitespace augmenter leaves documents with entity links unchanged, so this
one rebuilds the document from its text and keeps each gold mention's label
and KB ID.
"""

import random
from typing import Callable, Iterator, List, Sequence

import numpy as np
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

DEFAULT_VARIANTS = ("\n", "\n\n", "\n \n", "  ")


@registry.augmenters("spacy_refined.whitespace_augmenter.v1")
def create_whitespace_augmenter(
    level: float = 0.5, per_token: float = 0.03, variants: Sequence[str] = DEFAULT_VARIANTS
) -> Callable[[Language, Example], Iterator[Example]]:
    """An augmenter (for `[corpora.train.augmenter]`) that gives a share `level`
    of the training documents about `per_token` whitespace tokens per token
    (at least one), each a random one of `variants`, inserted where the text
    has a space and outside the gold mentions."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"whitespace augmenter: level must be between 0 and 1, not {level}")
    if per_token < 0:
        raise ValueError(f"whitespace augmenter: per_token must be >= 0, not {per_token}")
    variants = list(variants)
    if not variants or any(not v or not v.isspace() for v in variants):
        raise ValueError(f"whitespace augmenter: variants must be non-empty whitespace strings, not {variants!r}")

    def augment(nlp: Language, example: Example) -> Iterator[Example]:
        if level and random.random() < level:
            yield with_whitespace(nlp, example, per_token, variants)
        else:
            yield example

    return augment


def with_whitespace(nlp: Language, example: Example, per_token: float, variants: List[str]) -> Example:
    """`example` with whitespace tokens inserted after some tokens that are
    followed by a space and end no gold mention's inside; its gold entities
    (labels and KB IDs) moved with the text. Documents without such a place
    come back unchanged."""
    reference = example.reference
    inside = np.zeros(len(reference), dtype=bool)
    for ent in reference.ents:
        inside[ent.start : ent.end - 1] = True  # a break after these would split a mention
    places = [
        token.i for token in reference if token.whitespace_ and not inside[token.i] and token.i + 1 < len(reference)
    ]
    if not places:
        return example
    chosen = set(random.sample(places, min(len(places), max(1, round(per_token * len(reference))))))
    pieces: List[str] = []
    shift = [0] * len(reference)  # characters inserted before each token
    added = 0
    for token in reference:
        shift[token.i] = added
        pieces.append(token.text_with_ws)
        if token.i in chosen:
            variant = random.choice(variants)
            pieces.append(variant)
            added += len(variant)
    doc = nlp.make_doc("".join(pieces))
    ents = []
    for ent in reference.ents:
        offset = shift[ent.start]  # none are inserted inside a mention
        span = doc.char_span(ent.start_char + offset, ent.end_char + offset, alignment_mode="expand")
        if span is not None:
            ents.append(Span(doc, span.start, span.end, label=ent.label, kb_id=ent.kb_id))
    doc.ents = ents
    doc.user_data.update(reference.user_data)
    return Example(nlp.make_doc(doc.text), doc)
