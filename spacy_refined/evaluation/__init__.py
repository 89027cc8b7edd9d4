"""Entity-linking evaluation: metrics, document formats and the pipeline runner."""

from .formats import FormatError, read_aida, read_documents, read_id_map, read_nif
from .metrics import DocumentResult, Mention, predicted_mentions, score, span_mentions
from .runner import evaluate

__all__ = [
    "DocumentResult",
    "FormatError",
    "Mention",
    "evaluate",
    "predicted_mentions",
    "read_aida",
    "read_documents",
    "read_id_map",
    "read_nif",
    "score",
    "span_mentions",
]
