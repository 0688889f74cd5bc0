"""The optimizers against Keras 3's formulas, real Keras 3 and PyTorch; their validation,
state, configs, schedules and their use by Model.compile.

``KerasFormula`` below writes Keras 3's formulas out in NumPy float64 from
keras/src/optimizers (no code shared with the kernel or its twin): one ``step`` is one
``apply_gradients`` of Keras, in Keras's order -- clip (clipnorm per weight,
global_clipnorm, or clipvalue), decoupled weight decay ``w - w * wd * lr``, then each
optimizer's update with ``local_step = iterations + 1``; the learning rate is the
schedule at ``iterations``.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _codes
from fastlayers import optimizers as O
from fastlayers.layers import Dense
from fastlayers.optimizers import schedules as S



class KerasFormula:
    def __init__(self, name, learning_rate=None, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, **hp):
        defaults = {
            "SGD": dict(learning_rate=0.01, momentum=0.0, nesterov=False),
            "RMSprop": dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                            centered=False),
            "Adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                         amsgrad=False),
            "AdamW": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                          amsgrad=False),
            "Adagrad": dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7),
            "Adadelta": dict(learning_rate=0.001, rho=0.95, epsilon=1e-7),
            "Adamax": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
            "Nadam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
        }[name]
        self.name = name
        self.hp = dict(defaults)
        self.hp.update(hp)
        if learning_rate is not None:
            self.hp["learning_rate"] = learning_rate
        if name == "AdamW" and weight_decay is None:
            weight_decay = 0.004
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.iterations = 0
        self.state = {}
        self.u_product = 1.0

    def lr(self):
        lr = self.hp["learning_rate"]
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    def _clip(self, grads):
        if self.clipnorm:
            out = []
            for g in grads:
                l2 = np.sqrt(np.sum(g * g))
                out.append(g * self.clipnorm / max(l2, self.clipnorm))
            return out
        if self.global_clipnorm:
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            scale = self.global_clipnorm * min(1.0 / norm, 1.0 / self.global_clipnorm)
            return [g * scale for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def step(self, weights, grads):
        grads = self._clip([np.asarray(g, np.float64) for g in grads])
        lr = self.lr()
        if self.weight_decay is not None:
            for w in weights:
                w[...] = w - w * self.weight_decay * lr
        if self.name == "Nadam":
            self.u_product *= self.hp["beta_1"] * (1 - 0.5 * 0.96 ** (self.iterations + 1))
        for i, (w, g) in enumerate(zip(weights, grads)):
            st = self.state.setdefault(i, {})
            getattr(self, "_" + self.name.lower())(w, g, lr, st, self.iterations + 1)
        self.iterations += 1

    def _sgd(self, w, g, lr, st, t):
        mom = self.hp["momentum"]
        if mom == 0:
            w -= g * lr
            return
        m = st.setdefault("m", np.zeros_like(w))
        m[...] = m * mom - g * lr
        if self.hp["nesterov"]:
            w += m * mom - g * lr
        else:
            w += m

    def _rmsprop(self, w, g, lr, st, t):
        rho, eps, mom = self.hp["rho"], self.hp["epsilon"], self.hp["momentum"]
        v = st.setdefault("v", np.zeros_like(w))
        v[...] = rho * v + (1 - rho) * g * g
        if self.hp["centered"]:
            a = st.setdefault("a", np.zeros_like(w))
            a[...] = rho * a + (1 - rho) * g
            denominator = v - a * a + eps
        else:
            denominator = v + eps
        increment = lr * g / np.sqrt(denominator)
        if mom > 0:
            m = st.setdefault("m", np.zeros_like(w))
            m[...] = mom * m + increment
            w -= m
        else:
            w -= increment

    def _adam(self, w, g, lr, st, t):
        b1, b2, eps = self.hp["beta_1"], self.hp["beta_2"], self.hp["epsilon"]
        m = st.setdefault("m", np.zeros_like(w))
        v = st.setdefault("v", np.zeros_like(w))
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        if self.hp["amsgrad"]:
            vh = st.setdefault("vh", np.zeros_like(w))
            vh[...] = np.maximum(vh, v)
            v = vh
        w -= m * alpha / (np.sqrt(v) + eps)

    _adamw = _adam

    def _adagrad(self, w, g, lr, st, t):
        acc = st.setdefault("acc", np.full_like(w, self.hp["initial_accumulator_value"]))
        acc += g * g
        w -= lr * g / np.sqrt(acc + self.hp["epsilon"])

    def _adadelta(self, w, g, lr, st, t):
        rho, eps = self.hp["rho"], self.hp["epsilon"]
        ag = st.setdefault("ag", np.zeros_like(w))
        ad = st.setdefault("ad", np.zeros_like(w))
        ag[...] = rho * ag + (1 - rho) * g * g
        delta = -np.sqrt(ad + eps) * g / np.sqrt(ag + eps)
        ad[...] = rho * ad + (1 - rho) * delta * delta
        w += lr * delta

    def _adamax(self, w, g, lr, st, t):
        b1, b2, eps = self.hp["beta_1"], self.hp["beta_2"], self.hp["epsilon"]
        m = st.setdefault("m", np.zeros_like(w))
        u = st.setdefault("u", np.zeros_like(w))
        m += (g - m) * (1 - b1)
        u[...] = np.maximum(b2 * u, np.abs(g))
        w -= lr * m / ((1 - b1 ** t) * (u + eps))

    def _nadam(self, w, g, lr, st, t):
        b1, b2, eps = self.hp["beta_1"], self.hp["beta_2"], self.hp["epsilon"]
        m = st.setdefault("m", np.zeros_like(w))
        v = st.setdefault("v", np.zeros_like(w))
        u_t = b1 * (1 - 0.5 * 0.96 ** t)
        u_t_1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product_t = self.u_product  # already includes u_t (Keras updates it first)
        u_product_t_1 = u_product_t * u_t_1
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - b2 ** t)
        w -= m_hat * lr / (np.sqrt(v_hat) + eps)


# --------------------------------------------------------------------------- configurations
# Every optimizer x its options, clipping, weight decay and schedules.
def _configs():
    return {
        "sgd": ("SGD", dict(learning_rate=0.05)),
        "sgd_momentum": ("SGD", dict(learning_rate=0.05, momentum=0.9)),
        "sgd_nesterov": ("SGD", dict(learning_rate=0.05, momentum=0.8, nesterov=True)),
        "sgd_wd_clipnorm": ("SGD", dict(learning_rate=0.05, momentum=0.5, weight_decay=0.1,
                                        clipnorm=0.5)),
        "sgd_polynomial": ("SGD", dict(learning_rate=S.PolynomialDecay(0.1, 3, power=2.0,
                                                                       cycle=True),
                                       momentum=0.9)),
        "rmsprop": ("RMSprop", dict(learning_rate=0.01)),
        "rmsprop_momentum": ("RMSprop", dict(learning_rate=0.01, momentum=0.6)),
        "rmsprop_centered": ("RMSprop", dict(learning_rate=0.01, rho=0.8, centered=True)),
        "rmsprop_centered_momentum_clipvalue": ("RMSprop", dict(
            learning_rate=0.01, momentum=0.5, centered=True, clipvalue=0.3)),
        "rmsprop_piecewise": ("RMSprop", dict(learning_rate=S.PiecewiseConstantDecay(
            [1, 3], [0.02, 0.01, 0.005]))),
        "adam": ("Adam", dict(learning_rate=0.01)),
        "adam_amsgrad_global": ("Adam", dict(learning_rate=0.01, beta_1=0.8, amsgrad=True,
                                             global_clipnorm=1.0)),
        "adam_wd_exponential": ("Adam", dict(learning_rate=S.ExponentialDecay(0.01, 2, 0.5),
                                             weight_decay=0.05)),
        "adamw": ("AdamW", dict(learning_rate=0.01)),
        "adamw_amsgrad_global": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1,
                                               amsgrad=True, global_clipnorm=0.7)),
        "adagrad": ("Adagrad", dict(learning_rate=0.05)),
        "adagrad_clipnorm": ("Adagrad", dict(learning_rate=0.05, initial_accumulator_value=0.5,
                                             clipnorm=0.4)),
        "adagrad_inverse_time": ("Adagrad", dict(learning_rate=S.InverseTimeDecay(
            0.1, 2, 0.5, staircase=True))),
        "adadelta": ("Adadelta", dict(learning_rate=1.0)),
        "adadelta_wd": ("Adadelta", dict(learning_rate=1.0, rho=0.9, weight_decay=0.01)),
        "adamax": ("Adamax", dict(learning_rate=0.01)),
        "adamax_clipvalue": ("Adamax", dict(learning_rate=0.01, beta_2=0.9, clipvalue=0.5)),
        "nadam": ("Nadam", dict(learning_rate=0.01)),
        "nadam_global_cosine": ("Nadam", dict(learning_rate=S.CosineDecay(
            0.01, 5, alpha=0.1, warmup_target=0.02, warmup_steps=2), global_clipnorm=1.0)),
    }


CONFIGS = list(_configs())
SHAPES = [(3, 4), (4,), ()]
STEPS = 6


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[(2 * rng.standard_normal(s)).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return weights, grads


def _make(key):
    cls, kw = _configs()[key]
    return getattr(O, cls)(**kw)


def _run_fastlayers(key, weights, grads):
    opt = _make(key)
    ws = [w.copy() for w in weights]
    history = []
    for gs in grads:
        opt.apply(ws, gs)
        history.append([w.copy() for w in ws])
    return opt, history


# --------------------------------------------------------------------------- Keras's formulas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("key", CONFIGS)
def test_matches_keras_formula(key, dtype):
    weights, grads = _data(np.dtype(dtype))
    opt, history = _run_fastlayers(key, weights, grads)
    cls, kw = _configs()[key]
    ref = KerasFormula(cls, **kw)
    ws = [w.astype(np.float64) for w in weights]
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for step, gs in enumerate(grads):
        ref.step(ws, [g.astype(np.float64) for g in gs])
        for got, exp in zip(history[step], ws):
            np.testing.assert_allclose(got, exp, err_msg=f"{key} step {step}", **tol)
    assert opt.iterations == STEPS


def test_callable_learning_rates_of_the_step_or_of_nothing():
    weights, grads = _data()
    seen = []

    def of_step(step):
        seen.append(step)
        return 0.1 / (1 + step)

    a, b = O.SGD(of_step, momentum=0.5), O.SGD(lambda: 0.05, momentum=0.5)
    ra, rb = KerasFormula("SGD", learning_rate=of_step, momentum=0.5), None
    wa, wb, wr = ([w.copy() for w in weights] for _ in range(3))
    for gs in grads:
        a.apply(wa, gs)
        b.apply(wb, gs)
        ra.step(wr, gs)
    assert seen[::2] == list(range(STEPS))  # the step before each update, as Keras
    for x, y in zip(wa, wr):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    ref = KerasFormula("SGD", learning_rate=0.05, momentum=0.5)
    wr = [w.copy() for w in weights]
    for gs in grads:
        ref.step(wr, gs)
    for x, y in zip(wb, wr):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    assert a.learning_rate == pytest.approx(0.1 / (1 + STEPS))


# --------------------------------------------------------------------------- real Keras 3
_KERAS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    keras.config.set_floatx("float64")
    spec = json.load(open(sys.argv[1]))
    data = np.load(sys.argv[2])
    out = {}
    configs = {}
    for key, (cls, kw) in spec.items():
        kw = {k: (keras.optimizers.schedules.deserialize(v) if isinstance(v, dict) else v)
              for k, v in kw.items()}
        opt = getattr(keras.optimizers, cls)(**kw)
        vs = [keras.Variable(data[f"w{i}"], dtype="float64") for i in range(%(n)d)]
        for step in range(%(steps)d):
            opt.apply_gradients([(data[f"g{step}_{i}"], v) for i, v in enumerate(vs)])
            for i, v in enumerate(vs):
                out[f"{key}/{step}/{i}"] = np.asarray(v.numpy())
        configs[key] = keras.optimizers.serialize(opt)
        sched = kw.get("learning_rate")
        if callable(sched):
            out[f"{key}/lr"] = np.array([float(sched(s)) for s in range(12)])
    np.savez(sys.argv[3], **out)
    json.dump(configs, open(sys.argv[4], "w"), default=float)
""")


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """Every configuration run by real Keras 3 (jax backend, float64) in one subprocess:
    Keras must be configured before it is imported, and imported once."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    d = tmp_path_factory.mktemp("keras")
    weights, grads = _data()
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    arrays.update({f"g{s}_{i}": g for s, gs in enumerate(grads) for i, g in enumerate(gs)})
    np.savez(d / "data.npz", **arrays)
    spec = {}
    for key, (cls, kw) in _configs().items():
        spec[key] = (cls, {k: (S.serialize(v) if isinstance(v, S.LearningRateSchedule) else v)
                           for k, v in kw.items()})
    (d / "spec.json").write_text(json.dumps(spec))
    (d / "run.py").write_text(_KERAS_SCRIPT % {"n": len(SHAPES), "steps": STEPS})
    # jax with 64-bit enabled: the numpy backend rounds float64 variables through float32.
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(d / "run.py"), str(d / "spec.json"),
                           str(d / "data.npz"), str(d / "out.npz"), str(d / "configs.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if "ModuleNotFoundError" in proc.stderr or "ImportError" in proc.stderr:
            pytest.skip(f"keras is not usable here: {proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(proc.stderr)
    out = dict(np.load(d / "out.npz"))
    return out, json.loads((d / "configs.json").read_text())


@pytest.mark.parametrize("key", CONFIGS)
def test_matches_real_keras_step_by_step(key, keras_run):
    out, _ = keras_run
    weights, grads = _data()
    _, history = _run_fastlayers(key, weights, grads)
    # Keras evaluates schedules in float32 (the dtype of a Python float there).
    scheduled = isinstance(_configs()[key][1]["learning_rate"], S.LearningRateSchedule)
    tol = dict(rtol=1e-6, atol=1e-8) if scheduled else dict(rtol=1e-10, atol=1e-12)
    for step in range(STEPS):
        for i in range(len(SHAPES)):
            np.testing.assert_allclose(history[step][i], out[f"{key}/{step}/{i}"],
                                       err_msg=f"{key} step {step} weight {i}", **tol)
    if scheduled:
        sched = _configs()[key][1]["learning_rate"]
        np.testing.assert_allclose([sched(s) for s in range(12)], out[f"{key}/lr"],
                                   rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("key", CONFIGS)
def test_reads_real_keras_configs(key, keras_run):
    _, configs = keras_run
    opt = O.deserialize(configs[key])
    ours = _make(key)
    assert type(opt) is type(ours)
    theirs, mine = opt.get_config(), ours.get_config()
    for k, v in mine.items():
        if k in ("name",):
            continue
        if isinstance(v, float):
            assert theirs[k] == pytest.approx(v, rel=1e-6), k  # Keras stores lr in floatx
        elif isinstance(v, dict):
            assert theirs[k]["class_name"] == v["class_name"]
            for ck, cv in v["config"].items():
                assert theirs[k]["config"][ck] == cv, (k, ck)
        else:
            assert theirs[k] == v, k


# --------------------------------------------------------------------------- PyTorch
def _torch_optimizer(key, params):
    torch = pytest.importorskip("torch")
    tiny = 1e-14  # Keras and PyTorch place epsilon differently: equal as epsilon -> 0
    return {
        "sgd": (lambda: torch.optim.SGD(params, lr=0.05), {}),
        "momentum": (lambda: torch.optim.SGD(params, lr=0.05, momentum=0.9),
                     dict(learning_rate=0.05, momentum=0.9)),
        "nesterov": (lambda: torch.optim.SGD(params, lr=0.05, momentum=0.8, nesterov=True),
                     dict(learning_rate=0.05, momentum=0.8, nesterov=True)),
        "rmsprop_centered_momentum": (
            lambda: torch.optim.RMSprop(params, lr=0.01, alpha=0.8, eps=tiny, momentum=0.5,
                                        centered=True),
            dict(learning_rate=0.01, rho=0.8, epsilon=tiny, momentum=0.5, centered=True)),
        "adam_amsgrad": (lambda: torch.optim.Adam(params, lr=0.01, eps=tiny, amsgrad=True),
                         dict(learning_rate=0.01, epsilon=tiny, amsgrad=True)),
        "adamw": (lambda: torch.optim.AdamW(params, lr=0.01, eps=tiny, weight_decay=0.1),
                  dict(learning_rate=0.01, epsilon=tiny, weight_decay=0.1)),
        "adagrad": (lambda: torch.optim.Adagrad(params, lr=0.05, eps=tiny,
                                                initial_accumulator_value=0.1),
                    dict(learning_rate=0.05, epsilon=tiny)),
        "adadelta": (lambda: torch.optim.Adadelta(params, lr=1.0, rho=0.9, eps=1e-6),
                     dict(learning_rate=1.0, rho=0.9, epsilon=1e-6)),
        "adamax": (lambda: torch.optim.Adamax(params, lr=0.01, eps=tiny),
                   dict(learning_rate=0.01, epsilon=tiny)),
        "nadam": (lambda: torch.optim.NAdam(params, lr=0.01, eps=1e-7, momentum_decay=1.0),
                  dict(learning_rate=0.01, epsilon=1e-7)),
    }[key]


_TORCH_CLASSES = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD",
                  "rmsprop_centered_momentum": "RMSprop", "adam_amsgrad": "Adam",
                  "adamw": "AdamW", "adagrad": "Adagrad", "adadelta": "Adadelta",
                  "adamax": "Adamax", "nadam": "Nadam"}


@pytest.mark.parametrize("key", list(_TORCH_CLASSES))
def test_matches_pytorch_where_the_formulas_agree(key):
    torch = pytest.importorskip("torch")
    weights, grads = _data()
    params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    make_torch, kw = _torch_optimizer(key, params)
    topt = make_torch()
    ours = getattr(O, _TORCH_CLASSES[key])(**(kw or dict(learning_rate=0.05)))
    ws = [w.copy() for w in weights]
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        topt.step()
        ours.apply(ws, gs)
        for p, w in zip(params, ws):
            np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-8, atol=1e-10,
                                       err_msg=key)


# --------------------------------------------------------------------------- the engine protocol
@pytest.mark.parametrize("key", CONFIGS)
def test_engine_protocol_is_what_apply_does(key):
    """begin_step / slots_for / global norm / one kernel call per weight / end_step, as
    the compiled step runs them, gives what the eager apply() gives."""
    from fastlayers import ops

    weights, grads = _data()
    opt, history = _run_fastlayers(key, weights, grads)
    eng = _make(key)
    ws = [w.copy() for w in weights]
    for step, gs in enumerate(grads):
        hyper = eng.begin_step()
        assert hyper is eng.begin_step()  # one array, filled in place
        if eng.global_clipnorm is not None:
            hyper[_codes.H_GSCALE] = eng.global_norm_scale(sum(ops.sq_norm(g) for g in gs))
        for w, g in zip(ws, gs):
            slots = eng.slots_for(w)
            assert len(slots) == eng.n_slots
            ops.optimizer_update(eng.kind, hyper, [w], [g], [[s] for s in slots])
        eng.end_step()
        for a, b in zip(ws, history[step]):
            np.testing.assert_array_equal(a, b)


def test_begin_step_changes_nothing_and_follows_assignments():
    opt = O.Adam(0.01)
    w = np.ones(3)
    opt.apply([w], [np.ones(3)])
    h1 = opt.begin_step().copy()
    h1b = opt.begin_step()
    np.testing.assert_array_equal(h1, h1b)
    assert opt.iterations == 1
    t = 2
    assert h1[_codes.H_A] == pytest.approx(0.01 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t))
    assert h1[_codes.H_LR] == 0.01 and h1[_codes.H_WD] == 0
    assert h1[_codes.H_CLIPNORM] == math.inf and h1[_codes.H_CLIPVALUE] == math.inf
    h1b[_codes.H_GSCALE] = 0.25  # the engine's write is reset by the next begin_step
    assert opt.begin_step()[_codes.H_GSCALE] == 1.0
    opt.beta_1 = 0.5
    opt.learning_rate = 0.1
    opt.weight_decay = 0.2
    opt.clipvalue = 3.0
    h2 = opt.begin_step()
    assert h2[_codes.H_A] == pytest.approx(0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.5 ** t))
    assert h2[_codes.H_B] == pytest.approx(0.5)
    assert h2[_codes.H_WD] == pytest.approx(0.02) and h2[_codes.H_CLIPVALUE] == 3.0
    opt.amsgrad = True
    assert opt.kind == _codes.OPT_AMSGRAD and opt.n_slots == 3
    m, v, vh = opt.slots_for(w)
    assert opt.slots_for(w)[0] is m  # the same arrays every step


def test_kind_follows_the_hyperparameters():
    sgd = O.SGD()
    assert (sgd.kind, sgd.n_slots) == (_codes.OPT_SGD, 0)
    sgd.momentum = 0.9
    assert sgd.kind == _codes.OPT_MOMENTUM
    sgd.nesterov = True
    assert sgd.kind == _codes.OPT_NESTEROV
    r = O.RMSprop()
    assert r.kind == _codes.OPT_RMSPROP
    r.centered = True
    r.momentum = 0.5
    assert r.kind == _codes.OPT_RMSPROP_CENTERED_MOMENTUM and r.n_slots == 3


def test_slots_survive_kind_changes():
    """Switching momentum off and on keeps the velocity (same array object)."""
    opt = O.SGD(0.1, momentum=0.9)
    w = np.ones(3)
    opt.apply([w], [np.ones(3)])
    (v,) = opt.slots_for(w)
    opt.momentum = 0.0
    assert opt.slots_for(w) == ()
    opt.momentum = 0.5
    assert opt.slots_for(w)[0] is v
    ada = O.Adagrad(initial_accumulator_value=0.3)
    np.testing.assert_array_equal(ada.slots_for(np.zeros(2, np.float32))[0],
                                  np.full(2, 0.3, np.float32))


# --------------------------------------------------------------------------- validation
BAD = [
    ("SGD", "learning_rate", -0.1, ValueError), ("SGD", "learning_rate", math.nan, ValueError),
    ("SGD", "learning_rate", math.inf, ValueError), ("SGD", "learning_rate", "fast", TypeError),
    ("SGD", "momentum", math.nan, ValueError), ("SGD", "momentum", 1.5, ValueError),
    ("SGD", "momentum", -0.5, ValueError), ("SGD", "nesterov", "yes", TypeError),
    ("RMSprop", "rho", 1.0, ValueError), ("RMSprop", "epsilon", 0.0, ValueError),
    ("RMSprop", "momentum", math.nan, ValueError), ("RMSprop", "centered", 2, TypeError),
    ("Adam", "beta_1", 1.0, ValueError), ("Adam", "beta_2", 1.5, ValueError),
    ("Adam", "beta_2", math.nan, ValueError), ("Adam", "beta_1", -0.1, ValueError),
    ("Adam", "epsilon", 0.0, ValueError), ("Adam", "epsilon", -1.0, ValueError),
    ("Adam", "amsgrad", None, TypeError),
    ("AdamW", "weight_decay", None, ValueError), ("AdamW", "weight_decay", -0.1, ValueError),
    ("Adagrad", "initial_accumulator_value", -1.0, ValueError),
    ("Adagrad", "epsilon", -1e-7, ValueError), ("Adadelta", "rho", -0.1, ValueError),
    ("Adadelta", "epsilon", 0.0, ValueError), ("Adamax", "beta_2", 1.01, ValueError),
    ("Adamax", "beta_1", 1.0, ValueError), ("Nadam", "beta_1", 1.0, ValueError),
    ("Nadam", "epsilon", 0.0, ValueError),
    ("Adam", "clipnorm", 0.0, ValueError), ("RMSprop", "clipvalue", -1.0, ValueError),
    ("Nadam", "global_clipnorm", math.nan, ValueError),
    ("Adagrad", "weight_decay", math.inf, ValueError), ("SGD", "weight_decay", "x", TypeError),
]


@pytest.mark.parametrize("cls, arg, value, exc", BAD, ids=[f"{c}-{a}-{v!r}" for c, a, v, _ in BAD])
def test_bad_hyperparameters_are_rejected_at_construction_and_assignment(cls, arg, value, exc):
    kind = getattr(O, cls)
    with pytest.raises(exc, match=arg):
        kind(**{arg: value})
    opt = kind(name="mine")
    w = np.ones(3)
    opt.apply([w], [np.ones(3)])
    before = (getattr(opt, arg), opt.begin_step().copy(), w.copy(), opt.iterations)
    with pytest.raises(exc, match=f"{cls} 'mine': {arg}"):
        setattr(opt, arg, value)
    assert getattr(opt, arg) == before[0] or (before[0] is None and getattr(opt, arg) is None)
    np.testing.assert_array_equal(opt.begin_step(), before[1])
    opt.apply([w], [np.ones(3)])
    assert np.isfinite(w).all()


def test_adagrad_with_no_accumulator_and_no_epsilon_is_rejected():
    with pytest.raises(ValueError, match="both"):
        O.Adagrad(initial_accumulator_value=0.0, epsilon=0.0)
    opt = O.Adagrad(epsilon=0.0)  # fine while the accumulator starts above 0
    with pytest.raises(ValueError, match="both"):
        opt.initial_accumulator_value = 0.0
    assert opt.initial_accumulator_value == 0.1


def test_only_one_clip_option():
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and "
                                         "`global_clipnorm`"):
        O.Adam(clipnorm=1.0, global_clipnorm=1.0)
    opt = O.SGD(clipvalue=1.0)
    with pytest.raises(ValueError, match="Only one of"):
        opt.clipnorm = 2.0
    assert opt.clipnorm is None and opt.clipvalue == 1.0
    opt.clipvalue = None
    opt.clipnorm = 2.0  # one at a time is fine
    assert opt.begin_step()[_codes.H_CLIPNORM] == 2.0


@pytest.mark.parametrize("value, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                        ("3", TypeError)])
def test_iterations_must_be_a_non_negative_integer(value, exc):
    opt = O.Adam()
    opt.iterations = np.int64(4)
    with pytest.raises(exc, match="Adam '.*': iterations"):
        opt.iterations = value
    assert opt.iterations == 4


def test_unknown_and_unsupported_arguments():
    with pytest.raises(ValueError, match="not recognized"):
        O.Adam(lr_decay=0.1)
    with pytest.raises(ValueError, match="use_ema"):
        O.Adam(use_ema=True)
    O.Adam(use_ema=False, ema_momentum=0.99, loss_scale_factor=None)  # Keras's defaults
    with pytest.warns(UserWarning, match="decay"):
        O.SGD(decay=0.1)


def _state(opt, weights):
    return [a.copy() for a in opt.get_state(weights)]


@pytest.mark.parametrize("bad", ["shape", "complex", "schedule", "twice", "count"])
def test_a_failed_apply_changes_nothing(bad):
    opt = O.Nadam(O.schedules.ExponentialDecay(0.01, 1, 0.5) if bad != "schedule"
                  else (lambda step: 0.01 if step < 2 else math.nan))
    ws = [np.ones((2, 3)), np.ones(3)]
    for _ in range(2):
        opt.apply(ws, [np.full((2, 3), 0.5), np.full(3, -0.5)])
    before, state, it = [w.copy() for w in ws], _state(opt, ws), opt.iterations
    grads = {"shape": [np.ones((2, 3)), np.ones(4)],
             "complex": [np.ones((2, 3)), np.ones(3) * 1j],
             "schedule": [np.ones((2, 3)), np.ones(3)],
             "twice": [np.ones((2, 3)), np.ones((2, 3))],
             "count": [np.ones((2, 3))]}[bad]
    targets = [ws[0], ws[0]] if bad == "twice" else ws
    with pytest.raises((ValueError, TypeError)) as e:
        opt.apply(targets, grads)
    assert "Nadam" in str(e.value)
    for a, b in zip(ws, before):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(opt.get_state(ws), state):
        np.testing.assert_array_equal(a, b)
    assert opt.iterations == it


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize("key", CONFIGS)
def test_get_state_set_state_round_trip(key):
    weights, grads = _data()
    a = _make(key)
    wa = [w.copy() for w in weights]
    for gs in grads[:3]:
        a.apply(wa, gs)
    state = a.get_state(wa)
    assert state[0].dtype == np.int64 and int(state[0]) == 3
    assert len(state) == 1 + len(a._state_names) + sum(len(a.slots_for(w)) for w in wa)
    b = _make(key)
    wb = [w.copy() for w in wa]
    b.set_state(wb, state)
    assert b.iterations == 3
    for gs in grads[3:]:
        a.apply(wa, gs)
        b.apply(wb, gs)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def test_set_state_is_all_or_nothing():
    opt = O.Adam(0.01)
    ws = [np.ones((2, 2)), np.ones(3)]
    opt.apply(ws, [np.ones((2, 2)), np.ones(3)])
    good = opt.get_state(ws)
    bad = [np.array(7)] + [s + 1 for s in good[1:-1]] + [np.zeros(4)]
    with pytest.raises(ValueError, match=r"has shape \(4,\), expected \(3,\)"):
        opt.set_state(ws, bad)
    for a, b in zip(opt.get_state(ws), good):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expects 5 arrays"):
        opt.set_state(ws, good[:-1])
    with pytest.raises(ValueError, match="iterations"):
        opt.set_state(ws, [np.array(-2)] + good[1:])
    assert opt.iterations == 1
    assert len(opt.variables) == 5 and opt.variables[1] is opt.slots_for(ws[0])[0]


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("key", CONFIGS)
def test_get_config_from_config_round_trip(key):
    opt = _make(key)
    cfg = opt.get_config()
    json.dumps(cfg)  # plain data (schedules as {"class_name", "config"})
    again = type(opt).from_config(cfg)
    assert again.get_config() == cfg
    copy = O.deserialize(json.loads(json.dumps(O.serialize(opt))))
    assert type(copy) is type(opt) and copy.get_config() == cfg
    weights, grads = _data()
    w1, w2 = [w.copy() for w in weights], [w.copy() for w in weights]
    for gs in grads:
        opt.apply(w1, gs)
        copy.apply(w2, gs)
    for x, y in zip(w1, w2):
        np.testing.assert_array_equal(x, y)


SCHEDULES = {
    "exponential": lambda: S.ExponentialDecay(0.1, 3, 0.5),
    "exponential_staircase": lambda: S.ExponentialDecay(0.1, 3, 0.5, staircase=True),
    "inverse_time": lambda: S.InverseTimeDecay(0.1, 2, 0.5),
    "inverse_time_staircase": lambda: S.InverseTimeDecay(0.1, 2, 0.5, staircase=True),
    "piecewise": lambda: S.PiecewiseConstantDecay([2, 5], [0.1, 0.05, 0.01]),
    "cosine": lambda: S.CosineDecay(0.1, 6, alpha=0.2),
    "cosine_warmup": lambda: S.CosineDecay(0.0, 6, warmup_target=0.1, warmup_steps=3),
    "polynomial": lambda: S.PolynomialDecay(0.1, 4, end_learning_rate=0.01, power=0.5),
    "polynomial_cycle": lambda: S.PolynomialDecay(0.1, 4, power=2.0, cycle=True),
}


def _keras_schedule_formula(s, step):
    """The docstring formulas of keras/src/optimizers/schedules, written out."""
    c = s.get_config()
    name = type(s).__name__
    if name == "ExponentialDecay":
        p = step / c["decay_steps"]
        p = math.floor(p) if c["staircase"] else p
        return c["initial_learning_rate"] * c["decay_rate"] ** p
    if name == "InverseTimeDecay":
        p = step / c["decay_steps"]
        p = math.floor(p) if c["staircase"] else p
        return c["initial_learning_rate"] / (1 + c["decay_rate"] * p)
    if name == "PiecewiseConstantDecay":
        for b, v in zip(c["boundaries"], c["values"]):
            if step <= b:
                return v
        return c["values"][-1]
    if name == "CosineDecay":
        lr0, ds, alpha = c["initial_learning_rate"], c["decay_steps"], c["alpha"]
        if c["warmup_target"] is not None:
            ws = c["warmup_steps"]
            if step < ws:
                return (c["warmup_target"] - lr0) * step / ws + lr0
            lr0, step = c["warmup_target"], step - ws
        step = min(step, ds)
        return lr0 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / ds)) + alpha)
    if name == "PolynomialDecay":
        ds = c["decay_steps"]
        if c["cycle"]:
            ds = ds * (1 if step == 0 else math.ceil(step / ds))
        else:
            step = min(step, ds)
        return ((c["initial_learning_rate"] - c["end_learning_rate"])
                * (1 - step / ds) ** c["power"] + c["end_learning_rate"])
    raise AssertionError(name)


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_schedules_follow_keras_formulas_and_round_trip(key):
    s = SCHEDULES[key]()
    values = [s(step) for step in range(15)]
    np.testing.assert_allclose(values, [_keras_schedule_formula(s, t) for t in range(15)],
                               rtol=1e-12)
    assert all(isinstance(v, float) for v in values)
    cfg = s.get_config()
    assert type(s).from_config(cfg).get_config() == cfg
    again = S.deserialize(json.loads(json.dumps(S.serialize(s))))
    assert [again(t) for t in range(15)] == values


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        S.CosineDecay(0.1, -1)
    with pytest.raises(ValueError, match="length of boundaries"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="strictly increasing"):
        S.PiecewiseConstantDecay([3, 2], [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="initial_learning_rate"):
        S.PolynomialDecay("0.1", 10)
    with pytest.raises(ValueError, match="Unknown learning rate schedule"):
        S.deserialize({"class_name": "Nope", "config": {}})


def test_schedule_learning_rate_reads_as_its_current_value():
    opt = O.SGD(S.PiecewiseConstantDecay([1], [0.5, 0.25]))
    w = np.zeros(2)
    assert opt.learning_rate == 0.5
    opt.apply([w], [np.ones(2)])
    opt.apply([w], [np.ones(2)])
    assert opt.learning_rate == 0.25
    np.testing.assert_allclose(w, [-1.0, -1.0])
    assert isinstance(opt.learning_rate_schedule, S.PiecewiseConstantDecay)
    opt.learning_rate = 0.1  # back to a constant
    assert opt.learning_rate == 0.1 and opt.learning_rate_schedule is None


# --------------------------------------------------------------------------- get
@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("RMSprop", "RMSprop"), ("rmsprop", "RMSprop"),
                                       ("ADAM", "Adam"), ("adamw", "AdamW"), ("Adagrad", "Adagrad"),
                                       ("adadelta", "Adadelta"), ("adamax", "Adamax"),
                                       ("nadam", "Nadam")])
def test_get_by_name_is_case_insensitive(name, cls):
    opt = O.get(name)
    assert type(opt) is getattr(O, cls)
    assert opt.get_config()["learning_rate"] == getattr(O, cls)().get_config()["learning_rate"]


def test_get_classes_instances_dicts_and_errors():
    a = O.Adam()
    assert O.get(a) is a
    assert type(O.get(O.Nadam)) is O.Nadam
    assert type(O.get({"class_name": "adamax", "config": {"learning_rate": 0.5}})) is O.Adamax
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamm'.*'rmsprop'"):
        O.get("adamm")
    with pytest.raises(TypeError, match="Could not interpret"):
        O.get(5)


def test_keras_defaults_and_names():
    assert O.SGD().learning_rate == 0.01
    for cls in (O.RMSprop, O.Adam, O.AdamW, O.Adagrad, O.Adadelta, O.Adamax, O.Nadam):
        assert cls().learning_rate == 0.001
    assert O.RMSprop().get_config()["rho"] == 0.9
    assert O.Adadelta().rho == 0.95 and O.AdamW().weight_decay == 0.004
    assert O.Adagrad().initial_accumulator_value == 0.1
    assert O.Adam().epsilon == 1e-7 and O.Adam().amsgrad is False
    fl.backend.clear_session()
    assert O.RMSprop().name == "rm_sprop" and O.AdamW().name == "adam_w"  # Keras's auto names


# --------------------------------------------------------------------------- Model.compile
@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta",
                                  "adamax", "nadam"])
def test_compile_by_name_trains(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = (x @ rng.standard_normal((4, 2))).astype("float32")
    m = fl.Sequential([Dense(8, activation="tanh", input_shape=(4,)), Dense(2)])
    opt = O.get(name)
    opt.learning_rate = 1.0 if name == "adadelta" else 0.02
    m.compile(opt, "mse")
    first = m.train_on_batch(x, y)
    for _ in range(40):
        last = m.train_on_batch(x, y)
    assert last < first and opt.iterations == 41


@pytest.mark.parametrize("make", [
    lambda: O.Adam(0.01, amsgrad=True), lambda: O.SGD(0.05, momentum=0.9, weight_decay=0.1),
    lambda: O.SGD(0.05, clipnorm=0.1), lambda: O.Adam(0.01, global_clipnorm=0.1),
    lambda: O.SGD(S.ExponentialDecay(0.1, 2, 0.5), momentum=0.5),
    lambda: O.Adam(S.CosineDecay(0.01, 4)),
], ids=["amsgrad", "weight_decay", "clipnorm", "global_clipnorm", "sgd_schedule",
        "adam_schedule"])
def test_fused_chain_and_layer_path_agree_on_new_options(make, monkeypatch):
    """The old fused chain hands options it does not implement to the layer path."""
    def run(plan):
        monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if plan else "1")
        fl.backend.clear_session()
        fl.utils.set_random_seed(3)
        m = fl.Sequential([Dense(5, activation="relu", input_shape=(4,)), Dense(2)])
        m.compile(make(), "mse")
        rng = np.random.default_rng(1)
        x, y = rng.random((16, 4)).astype("float32"), rng.random((16, 2)).astype("float32")
        for _ in range(3):
            m.train_on_batch(x, y)
        m.fit(x, y, batch_size=5, epochs=2, verbose=0)
        return m.get_weights(), m.optimizer.iterations

    (wa, ia), (wb, ib) = run(True), run(False)
    assert ia == ib == 11
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
