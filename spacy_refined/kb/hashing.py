"""The KB's string keys, computed without importing spaCy.

A KB keys its entity IDs, Wikipedia titles and aliases by spaCy's string
hash, `spacy.strings.get_string_id`: 0 for "", the number of a reserved
symbol for spaCy's symbols (e.g. "root", "PERSON"), else MurmurHash64A of
the UTF-8 bytes with seed 1. The builder calls spaCy's function; readers
(`kb.reader`, hence `kb lookup`) compute the same keys here, because
importing spaCy imports thinc and torch, seconds of start-up for a lookup
that takes milliseconds. The hash is the C function of `murmurhash` (a
spaCy dependency, which spaCy's own hash calls), and the symbols are read
from spaCy's declaration of them (`spacy/symbols.pxd`, installed with it),
or from spaCy itself where that file is absent.
"""

import ctypes
import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

import murmurhash.mrmr

_SEED = 1
_ENUM_MEMBER = re.compile(r"\s+(?P<name>\w+)\s*(=\s*(?P<value>\d+))?\s*,?\s*(#.*)?")


def _hash64() -> ctypes._CFuncPtr:
    """murmurhash's `hash64(key, length, seed)`, as exported to Cython modules."""
    capsule = murmurhash.mrmr.__pyx_capi__["hash64"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.argtypes, get_name.restype = [ctypes.py_object], ctypes.c_char_p
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.argtypes, get_pointer.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_void_p
    pointer = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64)(pointer)


_HASH64 = _hash64()


def symbols_from_declaration(text: str) -> Dict[str, int]:
    """spaCy's symbols (string -> number) from the text of `symbols.pxd`: the
    members of `enum symbol_t` in order, numbered as C numbers them, with the
    first (`NIL`) standing for ""."""
    symbols: Dict[str, int] = {}
    value = -1
    lines = text.split("enum symbol_t:", 1)[1].splitlines()[1:]
    for line in lines:
        if not line.strip() or line.strip().startswith("#"):
            continue
        match = _ENUM_MEMBER.fullmatch(line)
        if match is None:  # the end of the enum
            break
        value = int(match["value"]) if match["value"] else value + 1
        symbols["" if value == 0 else match["name"]] = value
    return symbols


@lru_cache(maxsize=1)
def symbols() -> Dict[str, int]:
    """spaCy's reserved symbols, string -> number (`spacy.strings.SYMBOLS_BY_STR`)."""
    spec = importlib.util.find_spec("spacy")  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    declaration: Optional[Path] = next(
        (Path(d) / "symbols.pxd" for d in locations if (Path(d) / "symbols.pxd").exists()), None
    )
    if declaration is not None:
        found = symbols_from_declaration(declaration.read_text(encoding="utf8"))
        if found:
            return found
    from spacy.strings import SYMBOLS_BY_STR

    return dict(SYMBOLS_BY_STR)


def string_key(text: str) -> int:
    """The KB key of a string: `spacy.strings.get_string_id(text)`, without spaCy."""
    symbol = symbols().get(text)
    if symbol is not None:
        return symbol
    data = text.encode("utf8")
    return _HASH64(data, len(data), _SEED)
