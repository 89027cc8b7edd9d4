"""Windows of a document for a transformer: as few, as even and as little
padded as the window length allows.

spacy-transformers' `strided_spans.v1` starts a window every `stride`
tokens, so a document's last window is usually short and its windows
overlap by `window - stride` tokens everywhere; the transformer pads every
window of a batch to its longest, so short windows cost as much as full
ones. `balanced_windows.v1` cuts a document into the fewest windows of at
most `window` tokens that overlap by at least `overlap` tokens, all of the
same length (give or take one token): the overlap is spent only where the
document needs it, and a batch's windows, sorted by document length as
spacy-transformers sorts them, differ little in length.
"""

import math
from typing import Callable, Iterable, List

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry  # creates registry.span_getters

SpanGetter = Callable[[Iterable[Doc]], List[List[Span]]]


def balanced_windows(doc: Doc, window: int, overlap: int) -> List[Span]:
    """The windows of one document (see the module's docstring).

    doc (Doc): The document.
    window (int): The most tokens in a window.
    overlap (int): The fewest tokens that neighbouring windows share.
    RETURNS (List[Span]): The windows, in order, covering every token.
    """
    n = len(doc)
    if n <= window:
        return [doc[:]]
    step = window - overlap
    count = math.ceil((n - overlap) / step)
    stride = (n - overlap) / count
    length = math.ceil(stride) + overlap
    starts = [round(i * stride) for i in range(count)]
    return [doc[start : min(n, start + length)] for start in starts[:-1]] + [doc[max(0, n - length) :]]


@registry.span_getters("spacy_refined.balanced_windows.v1")
def configure_balanced_windows(window: int, overlap: int) -> SpanGetter:
    """A span getter for spacy-transformers: the fewest, evenly sized windows
    of at most `window` tokens, neighbours sharing at least `overlap`.

    window (int): The most tokens in a window.
    overlap (int): The fewest tokens that neighbouring windows share, so that
        a token near a window's edge also gets context from its other side.
    RETURNS (Callable[[Iterable[Doc]], List[List[Span]]]): The span getter.
    RAISES (ValueError): If `overlap` is not smaller than `window`.
    """
    if not 0 <= overlap < window:
        raise ValueError(f"balanced_windows: overlap ({overlap}) must be at least 0 and below window ({window})")

    def get_spans(docs: Iterable[Doc]) -> List[List[Span]]:
        return [balanced_windows(doc, window, overlap) for doc in docs]

    return get_spans
