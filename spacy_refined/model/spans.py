"""Windows of a document for a transformer, bounded by the encoder's own
wordpieces: as few, as long and as even as the encoder's maximum length
allows.

spacy-transformers cuts documents with a span getter that counts spaCy
tokens (e.g. `strided_spans.v1`: a window every `stride` tokens, so windows
overlap everywhere and the last one is usually short). A window of spaCy
tokens can hold anywhere from about one to several wordpieces a token (a
table of scores splits far more than prose), so a token-counted window must
be short enough for the worst text, and one that is too long is cut off by
spacy-transformers (its last tokens get no vector). Counting the encoder's
wordpieces instead lets every window be as long as the encoder allows:
most documents fit in one window, which gives each token the whole document
as context, and the others are cut into the fewest windows of near-equal
wordpiece length.

`spacy_refined.WindowedTransformerModel.v1` is spacy-transformers'
`TransformerModel` with these windows: the windows need the model's own
tokenizer, which exists only once the model is initialized or loaded, so
they are built in the architecture rather than by a registered span getter.
"""

import math
from typing import List, Optional, Sequence

import numpy as np
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc, Span
from spacy.util import registry
from spacy_transformers.layers.transformer_model import TransformerModel

from ..util import concatenated_ranges

# Wordpieces kept free in each window: its first token is tokenized without
# the text before it, which can split it into a piece or two more.
SLACK = 2


def token_wordpieces(doc: Doc, tokenizer) -> np.ndarray:
    """How many wordpieces of `tokenizer` each token of `doc` has, the
    document tokenized as a whole (whitespace tokens have none).

    doc (Doc): The document.
    tokenizer: A Hugging Face fast tokenizer (it gives character offsets).
    RETURNS (numpy.ndarray): One count per token.
    """
    encoding = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = np.asarray(encoding["offset_mapping"], dtype="int64").reshape(-1, 2)
    starts, lengths = doc.to_array([IDX, LENGTH]).astype("int64").T
    # the token of each character (-1: the whitespace between tokens)
    char_to_token = np.full(len(doc.text) + 1, -1, dtype="int64")
    char_to_token[concatenated_ranges(starts, lengths)] = np.repeat(np.arange(len(doc)), lengths)
    # a wordpiece belongs to the token of its first character in a token (leading spaces skipped)
    in_token = np.where(char_to_token >= 0, np.arange(len(char_to_token)), len(char_to_token))
    next_in_token = np.minimum.accumulate(in_token[::-1])[::-1]
    first = next_in_token[offsets[:, 0]] if len(offsets) else np.zeros(0, dtype="int64")
    owned = first < offsets[:, 1]
    return np.bincount(char_to_token[first[owned]], minlength=len(doc)).astype("int64")


def wordpiece_windows(doc: Doc, pieces: Sequence[int], max_wordpieces: int, overlap: int) -> List[Span]:
    """The windows of one document: few windows of at most `max_wordpieces`
    wordpieces each, where neighbours share at least `overlap` tokens.

    The document is split into the fewest parts of near-equal wordpiece
    count for which every part, widened by half the overlap on both sides,
    fits; so every token lies in a window that reaches at least
    `overlap // 2` tokens beyond it on each side (or to the document's
    edge). A single token with more wordpieces than fit gets a window of its
    own, which spacy-transformers truncates.

    doc (Doc): The document.
    pieces (Sequence[int]): The wordpieces of each token (`token_wordpieces`).
    max_wordpieces (int): The most wordpieces in a window, special tokens excluded.
    overlap (int): The fewest tokens that neighbouring windows share.
    RETURNS (List[Span]): The windows, in order, covering every token.
    """
    n = len(doc)
    cumulative = np.concatenate([[0], np.cumsum(pieces)])
    total = int(cumulative[-1])
    if total <= max_wordpieces or n <= 1:
        return [doc[:]]
    half = math.ceil(overlap / 2)
    for count in range(math.ceil(total / max_wordpieces), n + 1):
        # part boundaries: the token boundaries nearest to equal shares of the wordpieces
        bounds = [0]
        for target in (total * i / count for i in range(1, count)):
            cut = int(np.searchsorted(cumulative, target))
            if cumulative[cut] - target > target - cumulative[cut - 1]:
                cut -= 1
            bounds.append(min(max(cut, bounds[-1] + 1), n - (count - len(bounds))))
        bounds.append(n)
        windows = [(max(0, a - half), min(n, b + half)) for a, b in zip(bounds, bounds[1:])]
        if all(cumulative[end] - cumulative[start] <= max_wordpieces for start, end in windows):
            break
    return [doc[start:end] for start, end in windows]


@registry.architectures("spacy_refined.WindowedTransformerModel.v1")
def build_windowed_transformer_model(
    name: str,
    overlap: int = 32,
    max_wordpieces: Optional[int] = None,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
) -> TransformerModel:
    """spacy-transformers' `TransformerModel` (as `TransformerModel.v3`, whose
    other settings it takes) over windows of at most `max_wordpieces` of its
    own tokenizer's wordpieces (see `wordpiece_windows`).

    name (str): A Hugging Face model name or directory.
    overlap (int): The fewest spaCy tokens that neighbouring windows of a
        long document share, so that tokens near a cut also see the text
        on its other side.
    max_wordpieces (Optional[int]): The most wordpieces in a window, special
        tokens included; None: the tokenizer's `model_max_length` (which
        must then be set, as it is for the usual encoders).
    tokenizer_config (Optional[dict]): Settings of the Hugging Face tokenizer.
    transformer_config (Optional[dict]): Settings of the Hugging Face forward pass.
    mixed_precision (bool): Mixed-precision forward passes (GPU).
    grad_scaler_config (Optional[dict]): Gradient scaling under mixed precision.
    RETURNS (TransformerModel): The model.
    RAISES (ValueError): If `overlap` is negative.
    """
    if overlap < 0:
        raise ValueError(f"WindowedTransformerModel: overlap ({overlap}) must be at least 0")

    def get_spans(docs: List[Doc]) -> List[List[Span]]:
        tokenizer = model.tokenizer
        budget = (max_wordpieces or tokenizer.model_max_length) - tokenizer.num_special_tokens_to_add() - SLACK
        return [wordpiece_windows(doc, token_wordpieces(doc, tokenizer), budget, overlap) for doc in docs]

    model = TransformerModel(
        name, get_spans, tokenizer_config or {}, transformer_config or {}, mixed_precision, grad_scaler_config or {}
    )
    return model
