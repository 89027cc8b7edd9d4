"""The knowledge base: the store and candidate generation.

Building and extending a KB (`kb.builder`: `KBBuilder`, `append_segment`)
and the dump readers are imported from their modules, so that a pipeline
that only reads its KB does not load them.
"""

from .candidates import CandidateCSR, make_prior_candidates
from .errors import DumpError, KBError, UnknownEntityError
from .normalize import normalize_alias
from .store import RefinedKB

__all__ = [
    "CandidateCSR",
    "DumpError",
    "KBError",
    "RefinedKB",
    "UnknownEntityError",
    "make_prior_candidates",
    "normalize_alias",
]
