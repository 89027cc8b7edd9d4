"""The spaCy components: `refined_kb` (the shared KB) and `refined_linker`, and the linker's scorer."""

from .knowledge_base import KnowledgeBaseComponent, make_refined_kb
from .linker import RefinedLinker, find_linker, make_refined_linker
from .scoring import make_linking_scorer, score_linking

__all__ = [
    "KnowledgeBaseComponent",
    "RefinedLinker",
    "find_linker",
    "make_linking_scorer",
    "make_refined_kb",
    "make_refined_linker",
    "score_linking",
]
