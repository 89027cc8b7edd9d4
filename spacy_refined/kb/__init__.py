"""The knowledge base: store, builder, dump readers and candidate generation."""
from .builder import EntityRecord, KBBuilder
from .errors import DumpError, KBError
from .normalize import normalize_alias
from .store import CandidateBatch, RefinedKB

__all__ = ["CandidateBatch", "DumpError", "EntityRecord", "KBBuilder", "KBError", "RefinedKB", "normalize_alias"]
