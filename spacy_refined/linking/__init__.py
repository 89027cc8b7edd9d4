"""Linking a corpus: streamed input, sharded and resumable output, locally or with Ray Data."""

from .corpus import LinkSummary, link_corpus
from .io import read_output
from .ray_engine import link_dataset
from .records import doc_record, load_pipeline

__all__ = ["LinkSummary", "doc_record", "link_corpus", "link_dataset", "load_pipeline", "read_output"]
