"""Batch normalization whose batch statistics span every rank (``synchronized=True``).

Run as a callback op of the step program (NumPy, float64 inside), so the two
exchanges of the forward pass (sums and counts, then the squared deviations from
the global mean) and the one of the backward pass (the d-beta and d-gamma sums)
sit exactly where the math needs them.  With ``sync`` false, or in a world of
size 1, it is plain batch normalization.

The backward pass assumes what :class:`fastlayers.distribute.DataParallel` does:
each rank's loss is the mean over its shard, and the strategy averages weight
gradients weighted by ``local_rows / global_rows``.  Under that convention each
rank returns the input gradient of its own loss, so a 2-rank fit equals a
1-process fit on the global batch.
"""
from __future__ import annotations

import numpy as np


def _sum(a: np.ndarray, sync: bool) -> np.ndarray:
    if not sync:
        return a
    from ..distribute import allreduce

    return allreduce(a, op="sum")


def forward(layer, x, batch_stats: bool, update_stats: bool, sync: bool):
    """``(y, backprop)`` of ``layer`` (a built BatchNormalization) on ``x``."""
    x = np.asarray(x)
    axis = layer._axis
    moved = axis != x.ndim - 1
    xt = np.moveaxis(x, axis, -1) if moved else x
    shape_t = xt.shape
    c = shape_t[-1]
    x2 = np.ascontiguousarray(xt, dtype=np.float64).reshape(-1, c)
    rows = x2.shape[0]
    g = layer.gamma.value.astype(np.float64) if layer.gamma is not None else 1.0
    b = layer.beta.value.astype(np.float64) if layer.beta is not None else 0.0
    if batch_stats:
        sums = _sum(np.concatenate([x2.sum(axis=0), [rows]]), sync)
        total = float(sums[-1])
        mean = sums[:-1] / total
        var = _sum(((x2 - mean) ** 2).sum(axis=0), sync) / total
        if update_stats:
            # As the native op: in double, the moving variance unbiased (n / (n - 1)
            # over the global count; a single row keeps it biased).
            mm, mv = layer.moving_mean.value, layer.moving_variance.value
            mom = layer.momentum
            unbias = total / (total - 1) if total > 1 else 1.0
            mm[...] = mom * mm + (1 - mom) * mean
            mv[...] = mom * mv + (1 - mom) * var * unbias
    else:
        total = float(rows)
        mean = layer.moving_mean.value.astype(np.float64)
        var = layer.moving_variance.value.astype(np.float64)
    inv = 1.0 / np.sqrt(var + layer.epsilon)
    xhat = (x2 - mean) * inv
    y = _unmove((xhat * g + b).reshape(shape_t), axis, moved).astype(x.dtype)

    def backprop(dy):
        dyt = np.moveaxis(np.asarray(dy), axis, -1) if moved else np.asarray(dy)
        dy2 = np.ascontiguousarray(dyt, dtype=np.float64).reshape(-1, c)
        dbeta = dy2.sum(axis=0)
        dgamma = (dy2 * xhat).sum(axis=0)
        if batch_stats:
            # The global-loss sums: each rank's share weighted as the strategy weights it.
            both = _sum(np.concatenate([dbeta, dgamma]) * (rows / total), sync)
            gb, gg = both[:c], both[c:]
            dx2 = g * inv * (dy2 - (gb + xhat * gg) / rows)
        else:
            dx2 = g * inv * dy2
        dx = _unmove(dx2.reshape(shape_t), axis, moved).astype(x.dtype)
        grads = ([dgamma] if layer.gamma is not None else []) + \
            ([dbeta] if layer.beta is not None else []) + [None, None]
        return dx, grads

    return y, backprop


def _unmove(a: np.ndarray, axis: int, moved: bool) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, -1, axis)) if moved else a
