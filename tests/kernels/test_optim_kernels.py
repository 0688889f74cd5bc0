"""Fused optimizer kernels against the reference over several steps."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import optim as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# One weight set: a scalar, a bias, an odd matrix, an empty weight and one large
# enough (> 32k elements) to take the OpenMP path.
SHAPES = [(), (11,), (7, 13), (0, 3), (181, 191)]
STEPS = 4


def weight_set(rng, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def grads_for(rng, dtype, step, layout):
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    if layout == "noncontig":
        grads = [np.asfortranarray(g) if g.ndim == 2 else g for g in grads]
        grads[2] = np.ascontiguousarray(grads[2].T).T  # a transposed view
    elif layout == "readonly":
        for g in grads:
            g.setflags(write=False)
    return grads


def flat(arrays):
    return [np.ascontiguousarray(a).reshape(-1) for a in arrays]


SGD_CONFIGS = {
    "plain": dict(momentum=0.0, nesterov=False, velocities=False),
    "momentum": dict(momentum=0.9, nesterov=False, velocities=True),
    "nesterov": dict(momentum=0.9, nesterov=True, velocities=True),
    "zero_momentum_with_velocities": dict(momentum=0.0, nesterov=False, velocities=True),
}


@pytest.mark.parametrize("layout", ["contig", "noncontig", "readonly"])
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_sgd_update_matches_reference(dtype, config, layout, rng, close):
    cfg = SGD_CONFIGS[config]
    params = weight_set(rng, dtype)
    expected = [p.copy() for p in params]
    vel = [np.zeros_like(p) for p in params] if cfg["velocities"] else None
    exp_vel = [np.zeros_like(p) for p in params] if cfg["velocities"] else None
    ids = [id(p) for p in params]
    for step in range(STEPS):
        grads = grads_for(rng, dtype, step, layout)
        ops.sgd_update(params, grads, vel, learning_rate=0.05, momentum=cfg["momentum"],
                       nesterov=cfg["nesterov"])
        R.sgd_update(flat(expected), flat(grads), None if exp_vel is None else flat(exp_vel),
                     0.05, cfg["momentum"], cfg["nesterov"])
    assert [id(p) for p in params] == ids  # updated in place
    for got, exp in zip(params, expected):
        close(got, exp)
    if vel is not None:
        for got, exp in zip(vel, exp_vel):
            close(got, exp)


@pytest.mark.parametrize("layout", ["contig", "noncontig", "readonly"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_adam_update_matches_reference(dtype, layout, rng, close):
    params = weight_set(rng, dtype)
    expected = [p.copy() for p in params]
    ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    ems, evs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for t in range(1, STEPS + 1):
        grads = grads_for(rng, dtype, t, layout)
        ops.adam_update(params, grads, ms, vs, 0.01, 0.9, 0.999, 1e-7, t)
        R.adam_update(flat(expected), flat(grads), flat(ems), flat(evs), 0.01, 0.9, 0.999,
                      1e-7, t)
    for got, exp in zip(params + ms + vs, expected + ems + evs):
        close(got, exp, scale=10)  # 4 steps of lr_t * m / sqrt(v), float32 rounding


def test_adam_first_step_is_sign_times_lr():
    # Keras Adam: after one step from zero state, the update is lr * g / (|g| + eps').
    w = np.zeros(5)
    g = np.array([1.0, -2.0, 0.5, -0.25, 3.0])
    ops.adam_update([w], [g], [np.zeros(5)], [np.zeros(5)], 0.1, 0.9, 0.999, 1e-12, 1)
    np.testing.assert_allclose(w, -0.1 * np.sign(g), rtol=1e-9)


def test_sgd_touches_nothing_but_its_lists(rng):
    a, frozen = rng.standard_normal(4), rng.standard_normal(4)
    before = frozen.copy()
    ops.sgd_update([a], [np.ones(4)], learning_rate=0.5)
    np.testing.assert_array_equal(frozen, before)
    ops.sgd_update([], [])  # an empty compiled set is a no-op


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_optim_kernels_accept_readonly_grads(dtype, rng, close):
    w = rng.standard_normal(50).astype(dtype)
    g = rng.standard_normal(50).astype(dtype)
    g.setflags(write=False)
    expected = w.copy()
    K.sgd_update([w], [g], None, 0.1, 0.0, False)
    R.sgd_update([expected], [g], None, 0.1, 0.0, False)
    close(w, expected)
    m, v = np.zeros(50, dtype), np.zeros(50, dtype)
    K.adam_update([w], [g], [m], [v], 0.1, 0.9, 0.999, 1e-7, 1)
    R.adam_update([expected], [g], [np.zeros(50, dtype)], [np.zeros(50, dtype)], 0.1, 0.9,
                  0.999, 1e-7, 1)
    close(w, expected)


def test_raw_optim_kernels_check_sizes():
    with pytest.raises(ValueError, match="grads"):
        K.sgd_update([np.zeros(3)], [np.zeros(4)], None, 0.1, 0.0, False)
    with pytest.raises(ValueError, match="velocities"):
        K.sgd_update([np.zeros(3)], [np.zeros(3)], None, 0.1, 0.9, False)
    with pytest.raises(ValueError, match="t counts"):
        K.adam_update([np.zeros(3)], [np.zeros(3)], [np.zeros(3)], [np.zeros(3)],
                      0.1, 0.9, 0.999, 1e-7, 0)
