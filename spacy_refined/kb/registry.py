"""Registered functions that give spaCy components a `RefinedKB`."""

from pathlib import Path
from typing import Callable, Union

from spacy.util import registry
from spacy.vocab import Vocab

from .store import RefinedKB


@registry.misc("spacy_refined.KBFromPath.v1")
def kb_from_path(path: Union[str, Path]) -> Callable[[Vocab], RefinedKB]:
    """A KB loader for `[initialize.components.NAME.kb_loader]`: opens the KB at `path`."""

    def load(vocab: Vocab) -> RefinedKB:
        return RefinedKB.load(path, vocab)

    return load


@registry.misc("spacy_refined.EmptyKB.v1")
def empty_kb() -> Callable[[Vocab, int], RefinedKB]:
    """An empty `RefinedKB` for spaCy's `entity_linker` (`generate_empty_kb`), filled by `from_disk`."""

    def create(vocab: Vocab, entity_vector_length: int) -> RefinedKB:
        return RefinedKB(vocab, entity_vector_length)

    return create
