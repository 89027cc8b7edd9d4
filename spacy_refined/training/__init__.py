"""Offline jobs around a trained pipeline: training data (entity linking JSONL
-> spaCy Docs), scorer calibration and KB embedding."""

from .calibrate import calibrate_pipeline
from .corpus import docs_from_jsonl
from .embed import embed_kb

__all__ = ["calibrate_pipeline", "docs_from_jsonl", "embed_kb"]
