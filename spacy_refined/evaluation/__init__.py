"""Entity-linking evaluation: metrics, document formats and the pipeline runner."""
from .formats import FormatError, read_aida, read_documents, read_id_map, read_nif
from .metrics import DocumentResult, Mention, entity_status, score
from .runner import evaluate

__all__ = [
    "DocumentResult", "FormatError", "Mention", "entity_status", "evaluate",
    "read_aida", "read_documents", "read_id_map", "read_nif", "score",
]
