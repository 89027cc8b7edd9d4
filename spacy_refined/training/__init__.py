"""Training data: entity linking JSONL -> spaCy Docs."""
from .corpus import docs_from_jsonl

__all__ = ["docs_from_jsonl"]
