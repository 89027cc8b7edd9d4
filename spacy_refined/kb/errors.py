"""The errors of the KB: a bad KB directory or use, and an unknown entity.

`DumpError` (a bad input file) is defined in `spacy_refined.util`, next to
the readers that raise it, and is exported here with the KB's own errors.
"""

from ..util import DumpError

__all__ = ["DumpError", "KBError", "UnknownEntityError"]


class KBError(ValueError):
    """A KB directory is missing, corrupt, or does not fit its use."""


class UnknownEntityError(KBError, KeyError):
    """An entity ID that is not in the KB. A `KeyError` too, as for a mapping."""

    # KeyError's own __str__ would quote the message.
    __str__ = KBError.__str__
