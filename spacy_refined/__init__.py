"""spacy-refined: ReFinED-style end-to-end entity linking for spaCy."""

from .kb import RefinedKB

__version__ = "0.1.0"
__all__ = ["RefinedKB", "__version__"]
