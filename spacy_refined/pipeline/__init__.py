"""The `refined_linker` spaCy component, its scorer and KB embedding."""
from .embed import embed_kb
from .linker import RefinedLinker, find_linker, make_refined_linker
from .scoring import make_linking_scorer, score_linking

__all__ = [
    "RefinedLinker",
    "embed_kb",
    "find_linker",
    "make_linking_scorer",
    "make_refined_linker",
    "score_linking",
]
