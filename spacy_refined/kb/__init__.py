"""The knowledge base: the store and candidate generation.

Building and extending a KB (`kb.builder`: `KBBuilder`, `append_segment`)
and the dump readers are imported from their modules, so that a pipeline
that only reads its KB does not load them. The names that need spaCy
(`RefinedKB`, `make_prior_candidates`) are imported when first used, so that
the spaCy-free reader (`kb.reader.KBReader`, behind `kb lookup`) starts
without importing spaCy.
"""

import importlib
from typing import Any

from .errors import DumpError, KBError, UnknownEntityError
from .normalize import normalize_alias
from .reader import CandidateCSR, KBReader

# Exported names defined in modules that import spaCy: name -> module.
_SPACY_EXPORTS = {"RefinedKB": "store", "make_prior_candidates": "candidates"}

__all__ = [
    "CandidateCSR",
    "DumpError",
    "KBError",
    "KBReader",
    "RefinedKB",
    "UnknownEntityError",
    "make_prior_candidates",
    "normalize_alias",
]


def __getattr__(name: str) -> Any:
    if name in _SPACY_EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_SPACY_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
