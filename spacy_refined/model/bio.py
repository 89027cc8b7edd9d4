"""BIO decoding of the mention tagger's output: the best valid tag sequence
of each document, and the mentions it spells."""

import numpy as np

from ..util import time_major_order
from .types import Mentions

IMPOSSIBLE = -1e9  # log-probability of a tag that cannot be chosen


def best_tags(log_probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The most probable valid BIO tag sequence of each document (Viterbi):
    an I tag only follows a B or I tag of its label. Tagging token by token
    instead starts mentions with I tags, and an O between a B and an I
    splits what the tagger saw as one name.

    log_probs (np.ndarray): the tag log-probabilities of a batch's tokens,
        (n_tokens, 1 + 2L); tag IDs as in `decode_tags`.
    lengths (np.ndarray): the documents' lengths, in tokens.
    RETURNS (np.ndarray): the tag ID of each token, (n_tokens,).
    """
    lengths = np.asarray(lengths, dtype="int64")
    if not len(log_probs):
        return np.zeros(0, dtype="int64")
    ids = np.arange(log_probs.shape[1])
    is_i = (ids > 0) & (ids % 2 == 0)
    previous, following = ids[:, None], ids[None, :]
    allowed = ~is_i[following] | (previous == following) | (previous == following - 1)
    transitions = np.where(allowed, 0.0, IMPOSSIBLE).astype("float32")
    # The documents step by step, in the time-major order of a packed
    # sequence (no padding: memory linear in the batch's tokens). At step t,
    # the first batch_sizes[t] rows of `score` are the documents still going;
    # the others keep the score of their last token.
    order, batch_sizes = time_major_order(lengths)
    emissions = np.asarray(log_probs, dtype="float32")[order]
    steps = np.cumsum(batch_sizes) - batch_sizes
    score = emissions[: batch_sizes[0]] + np.where(is_i, IMPOSSIBLE, 0.0).astype("float32")
    best_previous = np.zeros(emissions.shape, dtype=np.min_scalar_type(len(ids)))
    for t in range(1, len(batch_sizes)):
        n, first = batch_sizes[t], steps[t]
        paths = score[:n, :, None] + transitions
        best_previous[first : first + n] = paths.argmax(axis=1)
        score[:n] = paths.max(axis=1) + emissions[first : first + n]
    current = score.argmax(axis=1)
    path = np.zeros(len(order), dtype="int64")
    for t in range(len(batch_sizes) - 1, -1, -1):
        n, first = batch_sizes[t], steps[t]
        path[first : first + n] = current[:n]
        current[:n] = best_previous[np.arange(first, first + n), current[:n]]
    tags = np.empty_like(path)
    tags[order] = path
    return tags


def decode_tags(tags: np.ndarray, lengths: np.ndarray) -> Mentions:
    """The mentions that BIO tags spell. An I tag that does not continue a
    mention of its label starts one.

    tags (np.ndarray): the tag IDs of a batch's tokens (0: O, 1 + 2l: B-l,
        2 + 2l: I-l).
    lengths (np.ndarray): the documents' lengths, in tokens.
    RETURNS (Mentions): the mentions, label l.
    """
    tags = np.asarray(tags, dtype="int64")
    inside = tags > 0
    label = np.where(inside, (tags - 1) // 2, -1)
    is_i = inside & (tags % 2 == 0)
    doc = np.repeat(np.arange(len(lengths)), lengths)
    first = np.zeros(len(tags), dtype=bool)
    first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    previous = np.r_[-1, label[:-1]]
    continues = is_i & ~first & (previous == label)
    starts = np.flatnonzero(inside & ~continues)
    ends = np.flatnonzero(inside & ~np.r_[continues[1:], False]) + 1
    offsets = (np.cumsum(lengths) - lengths)[doc[starts]]
    return Mentions(doc[starts], starts - offsets, ends - offsets, label[starts])
