"""The spaCy components: `refined_kb` (the shared KB), `refined_linker` and
`refined_qa`, which use it, and the linker's scorer."""

from .knowledge_base import KBListener, KnowledgeBaseComponent, make_refined_kb
from .linker import RefinedLinker, find_linker, make_refined_linker
from .qa import RefinedQA, make_refined_qa
from .scoring import make_linking_scorer, score_linking

__all__ = [
    "KBListener",
    "KnowledgeBaseComponent",
    "RefinedLinker",
    "RefinedQA",
    "find_linker",
    "make_linking_scorer",
    "make_refined_kb",
    "make_refined_linker",
    "make_refined_qa",
    "score_linking",
]
