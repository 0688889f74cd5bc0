"""The optimizer kernel (update_one behind ops.optimizer_update) against its NumPy twin.

Every kind, with and without the gradient preprocessing (global-norm factor, clipnorm,
clipvalue, weight decay), several steps, both dtypes, odd shapes (a scalar, an empty
weight, one large enough for the threaded path), strided and read-only gradients.
The scalars come from the optimizers' own begin_step(), the one producer of ``hyper``.
"""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from fastlayers import _codes
from fastlayers import _reference as R
from fastlayers import ops
from fastlayers import optimizers as O
from fastlayers._kernels import optim as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
SHAPES = [(), (11,), (7, 13), (0, 3), (181, 191)]
STEPS = 4
# float32: the kernel rounds every operation to float32, the twin once per step.
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}

# One optimizer per kind (and the options that change the kind).
KINDS = {
    "sgd": lambda: O.SGD(0.05),
    "momentum": lambda: O.SGD(0.05, momentum=0.9),
    "nesterov": lambda: O.SGD(0.05, momentum=0.8, nesterov=True),
    "rmsprop": lambda: O.RMSprop(0.01),
    "rmsprop_momentum": lambda: O.RMSprop(0.01, momentum=0.7),
    "rmsprop_centered": lambda: O.RMSprop(0.01, centered=True),
    "rmsprop_centered_momentum": lambda: O.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
    "adam": lambda: O.Adam(0.01),
    "amsgrad": lambda: O.Adam(0.01, beta_1=0.8, amsgrad=True),
    "adagrad": lambda: O.Adagrad(0.05),
    "adadelta": lambda: O.Adadelta(1.0),
    "adamax": lambda: O.Adamax(0.01),
    "nadam": lambda: O.Nadam(0.01),
}
PREPROCESS = {
    "none": {},
    "weight_decay": {"weight_decay": 0.1},
    "clipnorm": {"clipnorm": 1.5},
    "clipvalue": {"clipvalue": 0.5},
    "global_scale": {"global_clipnorm": 2.0},
}


def _parse_pxd():
    text = (Path(__file__).resolve().parents[2] / "csrc" / "_codes.pxd").read_text()
    found = {}
    for name, value in re.findall(r"^\s+([A-Z][A-Z0-9_]*)\s*=\s*(\d+)\s*$", text, re.M):
        assert name not in found, f"{name} defined twice in _codes.pxd"
        found[name] = int(value)
    return found


def _python_codes():
    return {k: v for k, v in vars(_codes).items()
            if re.fullmatch(r"(OPT|H)_[A-Z0-9_]+|HYPER_LEN", k) and isinstance(v, int)}


def test_codes_agree_between_python_and_cython():
    pxd, py = _parse_pxd(), _python_codes()
    pxd = {k: v for k, v in pxd.items() if k in py or k.startswith(("OPT_", "H_"))}
    assert pxd == py
    assert K.codes() == py  # the compiled values too
    assert sorted(v for k, v in py.items() if k.startswith("OPT_")) == list(
        range(_codes.OPT_COUNT + 1))
    assert sorted(v for k, v in py.items() if k.startswith("H_")) == list(
        range(_codes.HYPER_LEN))


def test_slot_counts_agree_between_python_and_the_kernel():
    for kind in range(_codes.OPT_COUNT):
        assert K.slot_count(kind) == _codes.N_SLOTS[kind] == len(_codes.SLOT_NAMES[kind])
    assert K.slot_count(_codes.OPT_COUNT) == -1
    assert K.slot_count(-1) == -1
    assert set(_codes.OPT_NAMES) == set(range(_codes.OPT_COUNT))


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_is_reached_by_an_optimizer(name):
    opt = KINDS[name]()
    assert _codes.OPT_NAMES[opt.kind] == "OPT_" + name.upper()
    # The documented per-kind slots of hyper are the ones begin_step fills.
    n = len(_codes.HYPER_SLOTS[opt.kind])
    assert len(opt._scalars(0.1, 1)) == n <= _codes.HYPER_LEN - _codes.H_A
    hyper = opt.begin_step()
    assert hyper.dtype == np.float64 and hyper.shape == (_codes.HYPER_LEN,)
    assert (hyper[_codes.H_A + n:] == 0).all()


def _grads(rng, dtype, layout):
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    if layout == "noncontig":
        grads[2] = np.ascontiguousarray(grads[2].T).T
        grads[1] = np.repeat(grads[1], 2)[::2]
    elif layout == "readonly":
        for g in grads:
            g.setflags(write=False)
    return grads


# Each preprocessing once, and the gradient layouts once each, per kind.
CASES = [("none", "contig"), ("none", "noncontig"), ("clipnorm", "readonly"),
         ("weight_decay", "contig"), ("clipvalue", "contig"), ("global_scale", "noncontig")]


@pytest.mark.parametrize("pre, layout", CASES, ids=["-".join(c) for c in CASES])
@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_kernel_matches_the_numpy_twin(dtype, name, pre, layout, rng):
    opt = KINDS[name]()
    for key, value in PREPROCESS[pre].items():
        setattr(opt, key, value)
    weights = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    expected = [w.copy() for w in weights]
    slots = [opt.slots_for(w) for w in weights]
    exp_slots = [tuple(s.copy() for s in ss) for ss in slots]
    ids = [id(w) for w in weights]
    for step in range(STEPS):
        grads = _grads(rng, dtype, layout)
        before = [g.copy() for g in grads]
        hyper = opt.begin_step()
        if pre == "global_scale":
            hyper[_codes.H_GSCALE] = opt.global_norm_scale(sum(ops.sq_norm(g) for g in grads))
            assert hyper[_codes.H_GSCALE] < 1  # the test gradients are above the norm
        ops.optimizer_update(opt.kind, hyper, weights, grads,
                             [[ss[j] for ss in slots] for j in range(opt.n_slots)])
        for w, g, ss in zip(expected, grads, exp_slots):
            R.update_reference(opt.kind, hyper, w, g, ss)
        opt.end_step()
        for g, b in zip(grads, before):
            np.testing.assert_array_equal(g, b)  # gradients are only read
    assert [id(w) for w in weights] == ids
    for got, exp in zip(weights, expected):
        np.testing.assert_allclose(got, exp, **TOL[dtype])
    for ss, ess in zip(slots, exp_slots):
        for got, exp in zip(ss, ess):
            np.testing.assert_allclose(got, exp, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_kernel_takes_readonly_grads_and_checks_sizes(dtype, rng):
    w = rng.standard_normal(50).astype(dtype)
    g = rng.standard_normal(50).astype(dtype)
    g.setflags(write=False)
    opt = O.Adam(0.1)
    m, v = (np.zeros(50, dtype) for _ in range(2))
    expected, em, ev = w.copy(), m.copy(), v.copy()
    hyper = opt.begin_step()
    K.apply_update(opt.kind, hyper, [w], [g], [[m], [v]])
    R.update_reference(opt.kind, hyper, expected, g, (em, ev))
    np.testing.assert_allclose(w, expected, **TOL[dtype])
    with pytest.raises(ValueError, match=r"grads\[0\] has 49 elements"):
        K.apply_update(opt.kind, hyper, [w], [g[:49]], [[m], [v]])
    with pytest.raises(ValueError, match="takes 2 slot lists"):
        K.apply_update(opt.kind, hyper, [w], [g], [[m]])
    with pytest.raises(ValueError, match="unknown optimizer kind"):
        K.apply_update(99, hyper, [w], [g], [])
    with pytest.raises(ValueError, match="hyper has 3 values"):
        K.apply_update(opt.kind, np.zeros(3), [w], [g], [[m], [v]])
    K.apply_update(opt.kind, hyper, [], [], [[], []])  # an empty set is a no-op


def test_adam_first_step_is_sign_times_lr():
    # Keras Adam from zero state: the first update is lr * g / (|g| + eps').
    w = np.zeros(5)
    g = np.array([1.0, -2.0, 0.5, -0.25, 3.0])
    opt = O.Adam(0.1, epsilon=1e-12)
    opt.apply([w], [g])
    np.testing.assert_allclose(w, -0.1 * np.sign(g), rtol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_sq_norm_sums_in_double(dtype, rng):
    g = rng.standard_normal((33, 1001)).astype(dtype)
    assert math.isclose(ops.sq_norm(g), R.sq_norm(g), rel_tol=1e-12)
    assert ops.sq_norm(np.zeros((0, 4), dtype)) == 0.0
    assert ops.sq_norm(g.T) == pytest.approx(R.sq_norm(g), rel=1e-12)  # strided input


def test_clipnorm_of_a_nan_gradient_is_nan_as_in_keras():
    opt = O.SGD(0.1, clipnorm=1.0)
    w, g = np.ones(3), np.array([1.0, np.nan, 2.0])
    opt.apply([w], [g])
    assert np.isnan(w).all()
