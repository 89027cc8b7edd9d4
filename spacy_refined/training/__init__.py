"""Training data (entity linking JSONL -> spaCy Docs) and scorer calibration."""
from .calibrate import calibrate_pipeline
from .corpus import docs_from_jsonl

__all__ = ["calibrate_pipeline", "docs_from_jsonl"]
