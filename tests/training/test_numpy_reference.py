"""Training through fastlayers matches a plain NumPy reference, step by step.

The reference below is written from the formulas (Keras's conventions), not from
fastlayers' code: forward, loss, backward, optimizer update.  Each test starts both
from the same weights, trains several steps with ``train_on_batch`` or
``fit(shuffle=False)``, and compares the returned losses and every weight after every
step (or epoch).

Tolerances: in float64 the two must agree to ``rtol=1e-10``; in float32 the model
must stay within ``rtol=atol=1e-5`` of a float64 reference started from the same
float32 weights and data.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, Add, BatchNormalization, Concatenate, Dense, Flatten

EPS = 1e-7  # Keras's fuzz factor (probability clipping)
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


# =========================================================================== reference: activations
def act(z, name):
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(name)


def act_grad(y, g, name):
    """dL/dz from dL/dy, through y = act(z)."""
    if name == "linear":
        return g
    if name == "relu":
        return g * (y > 0)
    if name == "sigmoid":
        return g * y * (1 - y)
    if name == "tanh":
        return g * (1 - y ** 2)
    if name == "softmax":
        return y * (g - (g * y).sum(axis=-1, keepdims=True))
    raise ValueError(name)


# =========================================================================== reference: losses
def ref_loss(name, from_logits, y, p):
    """(mean loss, d loss / d p) with Keras's definitions; p is (n, k)."""
    n = p.shape[0]
    if name == "mse":
        d = p - y
        return np.mean(d ** 2), 2 * d / d.size
    if name == "mae":
        d = p - y
        return np.mean(np.abs(d)), np.sign(d) / d.size
    if name == "binary_crossentropy":
        if from_logits:
            s = act(p, "sigmoid")
            loss = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
            return loss.mean(), (s - y) / p.size
        c = np.clip(p, EPS, 1 - EPS)
        loss = -(y * np.log(c) + (1 - y) * np.log(1 - c))
        g = ((1 - y) / (1 - c) - y / c) / p.size
        return loss.mean(), np.where((p >= EPS) & (p <= 1 - EPS), g, 0.0)
    if name == "sparse_categorical_crossentropy":
        onehot = np.zeros_like(p)
        onehot[np.arange(n), y.astype(int)] = 1.0
        return ref_loss("categorical_crossentropy", from_logits, onehot, p)
    if name == "categorical_crossentropy":
        if from_logits:
            z = p - p.max(axis=-1, keepdims=True)
            logsm = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            loss = -(y * logsm).sum(axis=-1)
            return loss.mean(), (np.exp(logsm) * y.sum(-1, keepdims=True) - y) / n
        # Keras: normalise rows to sum 1, clip to [eps, 1-eps], -sum(y log q)
        s = p.sum(axis=-1, keepdims=True)
        q = p / s
        c = np.clip(q, EPS, 1 - EPS)
        loss = -(y * np.log(c)).sum(axis=-1)
        gq = np.where((q >= EPS) & (q <= 1 - EPS), -y / c, 0.0)
        gp = (gq - (gq * q).sum(axis=-1, keepdims=True)) / s  # through q = p / sum(p)
        return loss.mean(), gp / n
    raise ValueError(name)


# =========================================================================== reference: optimizers
class RefSGD:
    def __init__(self, lr, momentum=0.0, nesterov=False):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.v = None

    def step(self, params, grads):
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        out = []
        for i, (w, g) in enumerate(zip(params, grads)):
            if self.momentum == 0:
                out.append(w - self.lr * g)
                continue
            self.v[i] = self.momentum * self.v[i] - self.lr * g
            if self.nesterov:
                out.append(w + self.momentum * self.v[i] - self.lr * g)
            else:
                out.append(w + self.v[i])
        return out


class RefAdam:
    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.t = 0
        self.m = self.v = None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        out = []
        for i, (w, g) in enumerate(zip(params, grads)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            out.append(w - lr_t * self.m[i] / (np.sqrt(self.v[i]) + self.eps))
        return out


OPTIMIZERS = {
    "sgd": (lambda: fl.optimizers.SGD(learning_rate=0.1), lambda: RefSGD(0.1)),
    "momentum": (lambda: fl.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                 lambda: RefSGD(0.05, 0.9)),
    "nesterov": (lambda: fl.optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
                 lambda: RefSGD(0.05, 0.8, nesterov=True)),
    "adam": (lambda: fl.optimizers.Adam(learning_rate=0.01), lambda: RefAdam(0.01)),
    "adam_custom": (lambda: fl.optimizers.Adam(learning_rate=0.02, beta_1=0.8, beta_2=0.99,
                                               epsilon=1e-4),
                    lambda: RefAdam(0.02, 0.8, 0.99, 1e-4)),
}


# =========================================================================== reference: MLP (+ BN)
class RefMLP:
    """Dense layers with activations; optionally a BatchNormalization after layer 0.

    ``params`` is the list of trainable arrays in fastlayers' weight order.
    """

    def __init__(self, acts, bn=False, momentum=0.99, bn_eps=1e-3):
        self.acts, self.bn, self.momentum, self.bn_eps = acts, bn, momentum, bn_eps
        self.moving = None  # [mean, var] when bn

    def forward(self, params, x, training=True):
        cache = []
        a = x
        p = list(params)
        for i, name in enumerate(self.acts):
            # the Dense before batch norm has no bias (its gradient is zero: batch norm
            # removes the mean; with Adam, float32 round-off noise in it would be amplified)
            W = p.pop(0)
            b = 0.0 if (self.bn and i == 0) else p.pop(0)
            z = a @ W + b
            cache.append(("linear", a, W, not (self.bn and i == 0)))
            if self.bn and i == 0:
                gamma, beta = p.pop(0), p.pop(0)
                if training:
                    mu, var = z.mean(0), z.var(0)
                    self.moving = [self.momentum * self.moving[0] + (1 - self.momentum) * mu,
                                   self.momentum * self.moving[1]
                                   + (1 - self.momentum) * var * len(z) / (len(z) - 1)]
                else:
                    mu, var = self.moving
                inv = 1 / np.sqrt(var + self.bn_eps)
                zh = (z - mu) * inv
                cache.append(("bn", zh, inv, gamma, training))
                z = zh * gamma + beta
            a = act(z, name)
            cache.append(("act", a, name))
        return a, cache

    def backward(self, cache, g):
        """Gradients of the params (same order) from dL/d output."""
        grads = []
        for entry in reversed(cache):
            if entry[0] == "act":
                g = act_grad(entry[1], g, entry[2])
            elif entry[0] == "linear":
                _, a, W, has_bias = entry
                grads = [a.T @ g] + ([g.sum(0)] if has_bias else []) + grads
                g = g @ W.T
            else:
                _, zh, inv, gamma, training = entry
                n = zh.shape[0]
                dgamma, dbeta = (g * zh).sum(0), g.sum(0)
                dzh = g * gamma
                if training:  # through the batch statistics
                    g = inv / n * (n * dzh - dzh.sum(0) - zh * (dzh * zh).sum(0))
                else:
                    g = dzh * inv
                grads = [dgamma, dbeta] + grads
        return grads


# =========================================================================== the cases
N, D_IN, HIDDEN, K = 8, 4, 5, 3

LOSSES = {
    # id: (loss given to compile, reference name, from_logits, output activation, targets)
    "mse": ("mse", "mse", False, "linear", "real"),
    "mae": ("mae", "mae", False, "linear", "real"),
    "bce": ("binary_crossentropy", "binary_crossentropy", False, "sigmoid", "binary"),
    "bce_logits": (lambda: fl.losses.BinaryCrossentropy(from_logits=True), "binary_crossentropy",
                   True, "linear", "binary"),
    "cce": ("categorical_crossentropy", "categorical_crossentropy", False, "softmax", "onehot"),
    "cce_logits": (lambda: fl.losses.CategoricalCrossentropy(from_logits=True),
                   "categorical_crossentropy", True, "linear", "onehot"),
    "scce": ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy", False,
             "softmax", "labels"),
    "scce_logits": (lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True),
                    "sparse_categorical_crossentropy", True, "linear", "labels"),
}


def make_data(kind, n=N, seed=0, k=K):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D_IN))
    if kind == "real":
        y = rng.standard_normal((n, k))
    elif kind == "binary":
        y = (rng.random((n, k)) > 0.5).astype(float)
    elif kind == "onehot":
        y = np.eye(k)[rng.integers(0, k, n)]
    else:
        y = rng.integers(0, k, n)
    return x, y


def build(out_act, dtype, hidden_act="tanh", bn=False, k=K):
    fl.backend.set_floatx(dtype)
    inp = fl.Input((D_IN,))
    h = Dense(HIDDEN, activation=None if bn else hidden_act, use_bias=not bn,
              bias_initializer="random_normal")(inp)
    if bn:
        h = Activation(hidden_act)(BatchNormalization(momentum=0.9)(h))
    out = Dense(k, activation=out_act, bias_initializer="random_normal")(h)
    model = fl.Model(inp, out)
    fl.backend.set_floatx("float32")
    return model


def compile_loss(spec):
    return spec() if callable(spec) else spec


def trainable_values(model):
    return [w.numpy().astype(np.float64) for w in model.trainable_weights]


def assert_close(actual, expected, dtype, what=""):
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(np.asarray(a, np.float64), e, err_msg=f"{what} [{i}]",
                                   **TOL[dtype])


def cast_data(x, y, dtype, kind):
    return x.astype(dtype), (y if kind == "labels" else y.astype(dtype))


# =========================================================================== train_on_batch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_train_on_batch_matches_numpy(loss, opt, dtype, expect_path):
    spec, ref_name, from_logits, out_act, kind = LOSSES[loss]
    make_opt, make_ref_opt = OPTIMIZERS[opt]
    model = build(out_act, dtype)
    model.compile(make_opt(), compile_loss(spec))
    expect_path(model)
    x, y = make_data(kind)
    x, y = cast_data(x, y, dtype, kind)
    ref = RefMLP(["tanh", out_act])
    ref_opt = make_ref_opt()
    params = trainable_values(model)  # the reference starts from the model's own start
    x64, y64 = x.astype(np.float64), np.asarray(y, np.float64)
    for step in range(6):
        out, cache = ref.forward(params, x64)
        ref_value, g = ref_loss(ref_name, from_logits, y64, out)
        params = ref_opt.step(params, ref.backward(cache, g))
        value = model.train_on_batch(x, y)
        assert isinstance(value, float)
        np.testing.assert_allclose(value, ref_value, err_msg=f"loss at step {step}", **TOL[dtype])
        assert_close(model.get_weights(), params, dtype, f"weights after step {step}")
        assert all(v.dtype == np.dtype(dtype) for v in model.get_weights())
    # the weights actually moved, and the loss the model reports now is the reference's
    out, _ = ref.forward(params, x64)
    np.testing.assert_allclose(model.test_on_batch(x, y),
                               ref_loss(ref_name, from_logits, y64, out)[0], **TOL[dtype])
    np.testing.assert_allclose(model.predict(x, verbose=0), out, **TOL[dtype])


# =========================================================================== fit
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("loss", ["mse", "bce", "cce_logits", "scce"])
def test_fit_matches_numpy(loss, opt, dtype, expect_path):
    """fit(shuffle=False): batches in order, last one smaller; History loss per epoch is
    the sample-weighted mean of the batch losses."""
    spec, ref_name, from_logits, out_act, kind = LOSSES[loss]
    make_opt, make_ref_opt = OPTIMIZERS[opt]
    model = build(out_act, dtype)
    model.compile(make_opt(), compile_loss(spec))
    expect_path(model)
    x, y = make_data(kind, n=11, seed=3)
    x, y = cast_data(x, y, dtype, kind)
    ref = RefMLP(["tanh", out_act])
    ref_opt = make_ref_opt()
    params = trainable_values(model)
    x64, y64 = x.astype(np.float64), np.asarray(y, np.float64)
    batch = 4
    for epoch in range(3):
        total = 0.0
        for lo in range(0, 11, batch):
            xb, yb = x64[lo:lo + batch], y64[lo:lo + batch]
            out, cache = ref.forward(params, xb)
            value, g = ref_loss(ref_name, from_logits, yb, out)
            total += value * len(xb)
            params = ref_opt.step(params, ref.backward(cache, g))
        h = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        assert list(h.history) == ["loss"]
        np.testing.assert_allclose(h.history["loss"][0], total / 11, **TOL[dtype])
        assert_close(model.get_weights(), params, dtype, f"weights after epoch {epoch}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_several_epochs_in_one_call(dtype, expect_path):
    model = build("linear", dtype)
    model.compile(fl.optimizers.Adam(0.01), "mse")
    expect_path(model)
    x, y = make_data("real", n=10, seed=4)
    x, y = x.astype(dtype), y.astype(dtype)
    ref, ref_opt = RefMLP(["tanh", "linear"]), RefAdam(0.01)
    params = trainable_values(model)
    expected = []
    for epoch in range(4):
        total = 0.0
        for lo in range(0, 10, 3):
            out, cache = ref.forward(params, x[lo:lo + 3].astype(np.float64))
            value, g = ref_loss("mse", False, y[lo:lo + 3].astype(np.float64), out)
            total += value * len(out)
            params = ref_opt.step(params, ref.backward(cache, g))
        expected.append(total / 10)
    h = model.fit(x, y, batch_size=3, epochs=4, shuffle=False, verbose=0)
    assert h.epoch == [0, 1, 2, 3]
    np.testing.assert_allclose(h.history["loss"], expected, **TOL[dtype])
    assert_close(model.get_weights(), params, dtype)
    assert model.optimizer.iterations == 16


# =========================================================================== BatchNormalization inside
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_train_with_batchnorm_matches_numpy(opt, dtype):
    TRAINED = (0, 1, 2, 5, 6)
    model = build("linear", dtype, bn=True)
    make_opt, make_ref_opt = OPTIMIZERS[opt]
    model.compile(make_opt(), "mse")
    assert [w.name for w in model.weights] == ["kernel", "gamma", "beta", "moving_mean",
                                               "moving_variance", "kernel", "bias"]
    # non-trivial gamma/beta
    w = model.get_weights()
    w[1] = np.linspace(0.5, 1.5, HIDDEN)
    w[2] = np.linspace(-0.2, 0.3, HIDDEN)
    model.set_weights(w)
    x, y = make_data("real", n=10, seed=5)
    x, y = x.astype(dtype), y.astype(dtype)
    ref, ref_opt = RefMLP(["tanh", "linear"], bn=True, momentum=0.9), make_ref_opt()
    ref.moving = [np.zeros(HIDDEN), np.ones(HIDDEN)]
    params = trainable_values(model)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for step in range(5):
        out, cache = ref.forward(params, x64, training=True)
        value, g = ref_loss("mse", False, y64, out)
        params = ref_opt.step(params, ref.backward(cache, g))
        np.testing.assert_allclose(model.train_on_batch(x, y), value, **TOL[dtype])
        got = model.get_weights()
        assert_close([got[i] for i in TRAINED], params, dtype, f"step {step}")
        assert_close(got[3:5], ref.moving, dtype, f"moving statistics, step {step}")
    # inference uses the moving statistics
    out, _ = ref.forward(params, x64, training=False)
    np.testing.assert_allclose(model.predict(x, verbose=0), out, **TOL[dtype])
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), ref_loss("mse", False, y64, out)[0],
                               **TOL[dtype])
    # fit with batches: BN statistics per batch
    for lo in range(0, 10, 4):
        out, cache = ref.forward(params, x64[lo:lo + 4])
        _, g = ref_loss("mse", False, y64[lo:lo + 4], out)
        params = ref_opt.step(params, ref.backward(cache, g))
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    got = model.get_weights()
    assert_close([got[i] for i in TRAINED], params, dtype, "after fit")
    assert_close(got[3:5], ref.moving, dtype, "moving statistics after fit")


# =========================================================================== a graph with merges
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_graph_with_add_concatenate_and_3d_input_matches_numpy(dtype):
    """x (n,2,3) -> Flatten -> [Dense a tanh, Dense b sigmoid] -> Add -> Concatenate with
    Flatten(x) -> Dense out; SGD momentum, MSE."""
    fl.backend.set_floatx(dtype)
    inp = fl.Input((2, 3))
    flat = Flatten()(inp)
    a = Dense(4, activation="tanh", bias_initializer="random_normal")(flat)
    b = Dense(4, activation="sigmoid", bias_initializer="random_normal")(flat)
    s = Add()([a, b])
    c = Concatenate()([s, flat])
    out = Dense(2, bias_initializer="random_normal")(c)
    model = fl.Model(inp, out)
    fl.backend.set_floatx("float32")
    model.compile(fl.optimizers.SGD(0.05, momentum=0.9), "mse")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 2, 3)).astype(dtype)
    y = rng.standard_normal((7, 2)).astype(dtype)
    Wa, ba, Wb, bb, Wo, bo = trainable_values(model)
    params = [Wa, ba, Wb, bb, Wo, bo]
    opt = RefSGD(0.05, 0.9)
    xf = x.reshape(7, 6).astype(np.float64)
    y64 = y.astype(np.float64)
    for step in range(5):
        Wa, ba, Wb, bb, Wo, bo = params
        ya = np.tanh(xf @ Wa + ba)
        yb = act(xf @ Wb + bb, "sigmoid")
        cc = np.concatenate([ya + yb, xf], axis=1)
        o = cc @ Wo + bo
        value, g = ref_loss("mse", False, y64, o)
        dWo, dbo = cc.T @ g, g.sum(0)
        ds = (g @ Wo.T)[:, :4]
        dza, dzb = ds * (1 - ya ** 2), ds * yb * (1 - yb)
        grads = [xf.T @ dza, dza.sum(0), xf.T @ dzb, dzb.sum(0), dWo, dbo]
        params = opt.step(params, grads)
        np.testing.assert_allclose(model.train_on_batch(x, y), value, **TOL[dtype])
        assert_close(model.get_weights(), params, dtype, f"step {step}")


# =========================================================================== single output, (n,) targets
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_output_with_1d_targets(dtype, expect_path):
    model = build("sigmoid", dtype, k=1)
    model.compile(fl.optimizers.SGD(0.2), "binary_crossentropy", metrics=["accuracy"])
    expect_path(model)
    x, y = make_data("binary", n=9, seed=7, k=1)
    x = x.astype(dtype)
    y1 = y[:, 0].astype(dtype)  # shape (n,)
    ref, opt = RefMLP(["tanh", "sigmoid"]), RefSGD(0.2)
    params = trainable_values(model)
    for step in range(4):
        out, cache = ref.forward(params, x.astype(np.float64))
        value, g = ref_loss("binary_crossentropy", False, y, out)
        acc = np.mean((out > 0.5) == (y > 0.5))
        params = opt.step(params, ref.backward(cache, g))
        got = model.train_on_batch(x, y1)
        assert isinstance(got, list) and len(got) == 2
        np.testing.assert_allclose(got[0], value, **TOL[dtype])
        assert got[1] == pytest.approx(acc)
        assert_close(model.get_weights(), params, dtype)


def test_loss_weights_scale_the_gradient():
    """compile(loss_weights=...) on a single output: loss and update scale together."""
    model = build("linear", "float64")
    model.compile(fl.optimizers.SGD(0.1), "mse", loss_weights=[0.5])
    x, y = make_data("real")
    ref, opt = RefMLP(["tanh", "linear"]), RefSGD(0.1)
    params = trainable_values(model)
    for _ in range(3):
        out, cache = ref.forward(params, x)
        value, g = ref_loss("mse", False, y, out)
        params = opt.step(params, ref.backward(cache, 0.5 * g))
        np.testing.assert_allclose(model.train_on_batch(x, y), 0.5 * value, **TOL["float64"])
        assert_close(model.get_weights(), params, "float64")


# =========================================================================== changing the optimizer
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_learning_rate_changed_between_steps_is_used(opt, expect_path):
    """Keras reads the learning rate at every step; so must the fused step."""
    make_opt, make_ref_opt = OPTIMIZERS[opt]
    model = build("linear", "float64")
    model.compile(make_opt(), "mse")
    expect_path(model)
    x, y = make_data("real")
    ref, ref_opt = RefMLP(["tanh", "linear"]), make_ref_opt()
    params = trainable_values(model)
    for step, lr in enumerate([ref_opt.lr, 0.2, 0.0, 0.03]):
        model.optimizer.learning_rate = lr
        ref_opt.lr = lr
        out, cache = ref.forward(params, x)
        value, g = ref_loss("mse", False, y, out)
        params = ref_opt.step(params, ref.backward(cache, g))
        np.testing.assert_allclose(model.train_on_batch(x, y), value, **TOL["float64"])
        assert_close(model.get_weights(), params, "float64", f"step {step}, lr {lr}")
    assert model.optimizer.iterations == 4


def test_non_contiguous_and_sliced_input_trains_like_contiguous(expect_path):
    x, y = make_data("labels", n=12)
    wide = np.zeros((12, 2 * D_IN))
    wide[:, ::2] = x  # a strided view equal to x
    models = []
    for xin, yin in [(x, y), (wide[:, ::2], y), (np.asfortranarray(x), y),
                     (x[::-1][::-1], y.astype("int32"))]:
        fl.utils.set_random_seed(0)
        m = build("softmax", "float64")
        m.compile(fl.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        expect_path(m)
        losses = [m.train_on_batch(xin, yin) for _ in range(3)]
        models.append((losses, m.get_weights()))
    for losses, weights in models[1:]:
        assert losses == models[0][0]
        for a, b in zip(weights, models[0][1]):
            np.testing.assert_array_equal(a, b)
