"""spacy-refined: ReFinED-style end-to-end entity linking for spaCy."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["RefinedKB", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported when first used: `RefinedKB` imports spaCy, which a command such as `kb lookup` does without.
    if name == "RefinedKB":
        from .kb.store import RefinedKB

        return RefinedKB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
