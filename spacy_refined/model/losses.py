"""Losses of the heads, with their gradients, on thinc arrays.

A true cross-entropy (mean over the rows that have a target) rather than
thinc's `CategoricalCrossentropy`, whose reported value is computed from the
gradient and which normalises by all rows: mentions without a target must
neither dilute nor drive the loss."""

from typing import Any, Tuple

import numpy as np
from thinc.api import Ops


def softmax_loss(ops: Ops, logits, targets: np.ndarray, weight: float) -> Tuple[float, Any]:
    """Mean cross-entropy over the rows with a target (-1: none), and its gradient."""
    valid = targets >= 0
    n = int(valid.sum())
    if not n:
        return 0.0, ops.alloc2f(*logits.shape)
    probs = ops.softmax(logits, axis=1)
    rows = np.flatnonzero(valid)
    d_logits = probs * ops.asarray2f(valid[:, None].astype("float32"))
    d_logits[ops.asarray1i(rows), ops.asarray1i(targets[rows])] -= 1.0
    picked = ops.to_numpy(probs[ops.asarray1i(rows), ops.asarray1i(targets[rows])])
    loss = float(-np.log(np.maximum(picked, 1e-12)).sum() / n)
    return weight * loss, d_logits * (weight / n)


def sigmoid_loss(ops: Ops, logits, targets: np.ndarray, rows: np.ndarray, weight: float) -> Tuple[float, Any]:
    """Binary cross-entropy averaged over the columns and over `rows`, and its gradient."""
    n = int(rows.sum()) * logits.shape[1]
    if not n:
        return 0.0, ops.alloc2f(*logits.shape)
    xp = ops.xp
    y = ops.asarray2f(targets)
    mask = ops.asarray2f(rows[:, None].astype("float32"))
    losses = xp.maximum(logits, 0) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))
    loss = float((losses * mask).sum()) / n
    d_logits = (1.0 / (1.0 + xp.exp(-logits)) - y) * mask
    return weight * loss, d_logits * (weight / n)
