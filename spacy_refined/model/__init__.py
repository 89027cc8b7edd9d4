"""The ReFinED model: thinc architecture, PyTorch heads and description encoders."""

from .architecture import build_refined_model, set_output_sizes
from .bio import best_tags, decode_tags
from .description import build_hash_description_encoder, build_transformer_description_encoder
from .types import Candidates, HeadsInput, Logits, Lookup, Mentions, RefinedInput, RefinedOutput

__all__ = [
    "Candidates",
    "HeadsInput",
    "Logits",
    "Lookup",
    "Mentions",
    "RefinedInput",
    "RefinedOutput",
    "best_tags",
    "build_hash_description_encoder",
    "build_refined_model",
    "build_transformer_description_encoder",
    "decode_tags",
    "set_output_sizes",
]
