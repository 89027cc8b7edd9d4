"""The ReFinED model: thinc architecture, PyTorch heads and description encoders."""
from .architecture import Candidates, Logits, Mentions, RefinedInput, RefinedOutput, best_tags, build_refined_model, decode_tags, set_output_sizes
from .description import build_hash_description_encoder, build_transformer_description_encoder

__all__ = [
    "Candidates",
    "Logits",
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
