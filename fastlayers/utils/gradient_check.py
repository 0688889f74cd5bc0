"""A numerical gradient checker for layers (built-in or your own)."""
from __future__ import annotations

import numpy as np

from ..engine.layer import split_backprop_result



class GradientCheckResult:
    """Relative errors of the analytic gradients against central differences."""

    def __init__(self, input_errors, weight_errors, tolerance):
        self.input_errors = input_errors
        self.weight_errors = weight_errors
        self.tolerance = tolerance

    @property
    def max_error(self) -> float:
        errs = list(self.input_errors) + list(self.weight_errors.values())
        return max(errs) if errs else 0.0

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance

    def __repr__(self) -> str:
        return (f"GradientCheckResult(ok={self.ok}, max_error={self.max_error:.2e}, "
                f"inputs={['%.1e' % e for e in self.input_errors]}, "
                f"weights={ {k: '%.1e' % v for k, v in self.weight_errors.items()} })")


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    num = np.linalg.norm(a - b)
    den = max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)
    return float(num / den)


def check_layer_gradients(layer, inputs, training: bool = False, eps: float = 1e-6,
                          tolerance: float = 1e-6, seed: int = 0,
                          raise_on_failure: bool = True) -> GradientCheckResult:
    """Compare a layer's backprop with central differences, in float64.

    The scalar checked is ``sum(R * layer(x))`` for a fixed random ``R``, so every
    output element contributes.  ``inputs`` is an array or a list of arrays; the
    layer must be float64 (``backend.set_floatx("float64")`` before creating it).
    Layers that draw random numbers in training mode (dropout) must reproduce the
    same draw for the same call; give them a fixed ``seed`` and this function
    rewinds their counter between evaluations.  Returns a
    :class:`GradientCheckResult`; raises ``AssertionError`` on failure unless
    ``raise_on_failure=False``.
    """
    if layer.dtype != "float64":
        raise TypeError(f"check_layer_gradients: layer {layer.name!r} must be float64, is {layer.dtype}")
    as_list = isinstance(inputs, (list, tuple))
    xs = [np.array(x, dtype=np.float64) for x in (inputs if as_list else [inputs])]
    if not layer.built:
        shapes = [(None,) + x.shape[1:] for x in xs]
        layer.build(shapes if as_list else shapes[0])
        layer.built = True
    weights = [w for w in layer.weights if w.trainable]
    counter0 = getattr(layer, "_counter", None)
    if isinstance(counter0, np.ndarray):
        counter0 = counter0.copy()
    # Snapshot state a training-mode forward may change (moving statistics).
    state0 = [w.numpy() for w in layer.weights]

    def restore():
        for w, v in zip(layer.weights, state0):
            w.assign(v)
        if isinstance(counter0, np.ndarray):
            layer._counter[...] = counter0
        elif counter0 is not None:
            layer._counter = counter0

    def f(values):
        restore()
        out, _ = layer.forward(values if as_list else values[0], training=training)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    rng = np.random.default_rng(seed)
    outs0 = f(xs)
    R = [rng.standard_normal(o.shape) for o in outs0]

    def scalar(values) -> float:
        return float(sum(np.sum(r * o) for r, o in zip(R, f(values))))

    restore()
    out, bp = layer.forward(xs if as_list else xs[0], training=training)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    if bp is None:
        raise AssertionError(f"layer {layer.name!r} returned no backprop")
    gs = [r.astype(o.dtype) for r, o in zip(R, outs)]
    res = bp(gs if len(gs) > 1 else gs[0])
    dx, dws = split_backprop_result(res, bool(layer.weights))
    dxs = list(dx) if as_list else [dx]
    analytic_w = dict(zip((id(w) for w in layer.weights), list(dws or [])))

    input_errors = []
    for i, x in enumerate(xs):
        num = np.zeros_like(x)
        flat = x.reshape(-1)
        nflat = num.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = scalar(xs)
            flat[j] = old - eps
            minus = scalar(xs)
            flat[j] = old
            nflat[j] = (plus - minus) / (2 * eps)
        input_errors.append(_rel_err(np.asarray(dxs[i]), num))

    weight_errors = {}
    for w in weights:
        analytic = analytic_w.get(id(w))
        analytic = np.zeros(w.shape) if analytic is None else np.array(analytic, dtype=np.float64)
        base = state0[layer.weights.index(w)]
        num = np.zeros(w.shape)
        for j in range(base.size):
            pert = base.copy().reshape(-1)
            pert[j] += eps
            state0[layer.weights.index(w)] = pert.reshape(w.shape)
            plus = scalar(xs)
            pert[j] -= 2 * eps
            state0[layer.weights.index(w)] = pert.reshape(w.shape)
            minus = scalar(xs)
            num.reshape(-1)[j] = (plus - minus) / (2 * eps)
        state0[layer.weights.index(w)] = base
        weight_errors[w.name] = _rel_err(analytic, num)
    restore()
    result = GradientCheckResult(input_errors, weight_errors, tolerance)
    if raise_on_failure and not result.ok:
        raise AssertionError(f"gradient check failed for layer {layer.name!r}: {result}")
    return result
