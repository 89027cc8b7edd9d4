"""Normalisation: the keys under which mentions and KB aliases meet, and
MediaWiki page titles as links and redirects name them.

The rule follows ReFinED's surface-form normalisation: case folding, accent
folding, punctuation removal and dropping a leading "the", so that "The
U.S.", "the US" and "U.S" share one key, as do "Zürich" and "Zurich".
"""

import html
import re
import unicodedata
from functools import lru_cache
from typing import Iterable, List

from .hashing import string_key

# Dots and apostrophes vanish inside words ("U.S." -> "us", "O'Neill" -> "oneill");
# every other punctuation or symbol character separates words.
_DROP = re.compile(r"[.'’‘`´ʼ]")
_SEPARATE = re.compile(r"[\W_]+")
_LEADING_THE = "the "
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=1 << 16)
def normalize_alias(text: str) -> str:
    """Return the normalised form of a mention or alias (may be "")."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = _DROP.sub("", text.casefold())
    text = _SEPARATE.sub(" ", text).strip()
    if text.startswith(_LEADING_THE) and len(text) > len(_LEADING_THE):
        text = text[len(_LEADING_THE) :]
    return text


def alias_key(text: str) -> int:
    """The 64-bit key of a mention or alias: spaCy's string hash of its normalised form."""
    return string_key(normalize_alias(text))


def alias_keys(texts: Iterable[str]) -> List[int]:
    """Keys of many mentions or aliases (see `alias_key`)."""
    return [string_key(normalize_alias(text)) for text in texts]


def normalize_title(title: str) -> str:
    """Normalise a page title the way MediaWiki does for wikis with
    first-letter case: unescape HTML entities, drop the section, turn
    underscores into spaces, collapse whitespace and upper-case the first
    letter.
    """
    if "&" in title:
        title = html.unescape(title)
    title = title.split("#", 1)[0].replace("_", " ")
    title = _WHITESPACE.sub(" ", title).strip()
    return title[:1].upper() + title[1:]
