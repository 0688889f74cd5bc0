"""The same model trained by fastlayers and by PyTorch, step by step (float64).

PyTorch's SGD, with momentum and Nesterov, is the same algorithm as Keras's written
differently (``v_torch = -v_keras / lr``), so the weights must agree to 1e-10.
PyTorch's Adam is *not* Keras's (it puts epsilon outside the bias correction), so
Adam is only checked against the NumPy reference (test_numpy_reference.py).
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import BatchNormalization, Dense

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: threads only add contention on 2 cores

TOL = dict(rtol=1e-10, atol=1e-12)

OPTS = {
    "sgd": (dict(learning_rate=0.1), dict(lr=0.1)),
    "momentum": (dict(learning_rate=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    "nesterov": (dict(learning_rate=0.05, momentum=0.8, nesterov=True),
                 dict(lr=0.05, momentum=0.8, nesterov=True)),
}


def _torch_loss(name):
    if name == "mse":
        return torch.nn.MSELoss()
    if name == "mae":
        return torch.nn.L1Loss()
    if name == "bce_logits":
        return torch.nn.BCEWithLogitsLoss()
    if name == "scce_logits":
        return torch.nn.CrossEntropyLoss()
    if name == "cce_softmax":
        return lambda p, y: -(y * torch.log(p)).sum(dim=1).mean()
    raise ValueError(name)


CASES = {
    # name: (fastlayers loss, output activation, targets)
    "mse": ("mse", None, "real"),
    "mae": ("mae", None, "real"),
    "bce_logits": (lambda: fl.losses.BinaryCrossentropy(from_logits=True), None, "binary"),
    "scce_logits": (lambda: fl.losses.SparseCategoricalCrossentropy(from_logits=True), None,
                    "labels"),
    "cce_softmax": ("categorical_crossentropy", "softmax", "onehot"),
}


def _data(kind, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    y = {"real": lambda: rng.standard_normal((n, 3)),
         "binary": lambda: (rng.random((n, 3)) > 0.5).astype(float),
         "labels": lambda: rng.integers(0, 3, n),
         "onehot": lambda: np.eye(3)[rng.integers(0, 3, n)]}[kind]()
    return x, y


def _models(out_act, opt):
    fl.backend.set_floatx("float64")
    inp = fl.Input((4,))
    h = Dense(6, activation="tanh", bias_initializer="random_normal")(inp)
    out = Dense(3, activation=out_act, bias_initializer="random_normal")(h)
    model = fl.Model(inp, out)
    fl.backend.set_floatx("float32")

    lin1, lin2 = torch.nn.Linear(4, 6).double(), torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        W1, b1, W2, b2 = model.get_weights()
        lin1.weight.copy_(torch.from_numpy(W1.T.copy()))
        lin1.bias.copy_(torch.from_numpy(b1))
        lin2.weight.copy_(torch.from_numpy(W2.T.copy()))
        lin2.bias.copy_(torch.from_numpy(b2))
    layers = [lin1, torch.nn.Tanh(), lin2] + ([torch.nn.Softmax(dim=1)] if out_act else [])
    tmodel = torch.nn.Sequential(*layers)
    topt = torch.optim.SGD(tmodel.parameters(), **OPTS[opt][1])
    return model, tmodel, topt


def _torch_weights(tmodel):
    lin = [m for m in tmodel if isinstance(m, torch.nn.Linear)]
    out = []
    for m in lin:
        out += [m.weight.detach().numpy().T, m.bias.detach().numpy()]
    return out


def _torch_step(tmodel, topt, loss_fn, x, y, kind):
    topt.zero_grad()
    yt = torch.from_numpy(np.asarray(y))
    if kind == "labels":
        yt = yt.long()
    loss = loss_fn(tmodel(torch.from_numpy(x)), yt)
    loss.backward()
    topt.step()
    return float(loss.detach())


def _compile_loss(spec):
    return spec() if callable(spec) else spec


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("case", list(CASES))
def test_train_on_batch_matches_torch(case, opt, expect_path):
    loss, out_act, kind = CASES[case]
    model, tmodel, topt = _models(out_act, opt)
    model.compile(fl.optimizers.SGD(**OPTS[opt][0]), _compile_loss(loss))
    expect_path(model)
    x, y = _data(kind, 8)
    loss_fn = _torch_loss(case)
    for step in range(6):
        expected = _torch_step(tmodel, topt, loss_fn, x, y, kind)
        got = model.train_on_batch(x, y)
        np.testing.assert_allclose(got, expected, err_msg=f"loss, step {step}", **TOL)
        for a, b in zip(model.get_weights(), _torch_weights(tmodel)):
            np.testing.assert_allclose(a, b, err_msg=f"weights, step {step}", **TOL)


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("case", ["mse", "scce_logits"])
def test_fit_matches_torch(case, opt, expect_path):
    loss, out_act, kind = CASES[case]
    model, tmodel, topt = _models(out_act, opt)
    model.compile(fl.optimizers.SGD(**OPTS[opt][0]), _compile_loss(loss))
    expect_path(model)
    x, y = _data(kind, 13, seed=1)
    loss_fn = _torch_loss(case)
    expected = []
    for _ in range(3):
        total = 0.0
        for lo in range(0, 13, 5):
            total += _torch_step(tmodel, topt, loss_fn, x[lo:lo + 5], y[lo:lo + 5], kind) * \
                len(x[lo:lo + 5])
        expected.append(total / 13)
    h = model.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(h.history["loss"], expected, **TOL)
    for a, b in zip(model.get_weights(), _torch_weights(tmodel)):
        np.testing.assert_allclose(a, b, **TOL)


def test_batchnorm_training_matches_torch():
    """Keras momentum m is torch momentum 1 - m; epsilon is passed as is.  Torch's
    running variance and fastlayers' moving variance are both updated with the unbiased
    batch variance (DESIGN.md R7)."""
    n = 10
    fl.backend.set_floatx("float64")
    inp = fl.Input((4,))
    bn = BatchNormalization(momentum=0.9, epsilon=1e-3)
    out = Dense(2, bias_initializer="random_normal")(bn(Dense(5, use_bias=False)(inp)))
    model = fl.Model(inp, out)
    fl.backend.set_floatx("float32")
    model.compile(fl.optimizers.SGD(0.1, momentum=0.5), "mse")

    lin1 = torch.nn.Linear(4, 5, bias=False).double()
    tbn = torch.nn.BatchNorm1d(5, eps=1e-3, momentum=0.1).double()
    lin2 = torch.nn.Linear(5, 2).double()
    W1, gamma, beta, mm, mv, W2, b2 = model.get_weights()
    with torch.no_grad():
        lin1.weight.copy_(torch.from_numpy(W1.T.copy()))
        lin2.weight.copy_(torch.from_numpy(W2.T.copy()))
        lin2.bias.copy_(torch.from_numpy(b2))
    tmodel = torch.nn.Sequential(lin1, tbn, lin2)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.5)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((n, 4)) * 2 + 1, rng.standard_normal((n, 2))
    # The moving variance is updated with the unbiased batch variance, as torch's running
    # variance (and Keras 2 / tf.keras) is; track it from the batch before the step.
    keras_mv = np.ones(5)
    for step in range(5):
        tmodel.train()
        with torch.no_grad():
            v_batch = lin1(torch.from_numpy(x)).numpy().var(axis=0, ddof=1)  # unbiased, as torch
        keras_mv = 0.9 * keras_mv + 0.1 * v_batch
        expected = _torch_step(tmodel, topt, torch.nn.MSELoss(), x, y, "real")
        got = model.train_on_batch(x, y)
        np.testing.assert_allclose(got, expected, **TOL)
        w = model.get_weights()
        np.testing.assert_allclose(w[0], lin1.weight.detach().numpy().T, **TOL)
        np.testing.assert_allclose(w[1], tbn.weight.detach().numpy(), **TOL)
        np.testing.assert_allclose(w[2], tbn.bias.detach().numpy(), **TOL)
        np.testing.assert_allclose(w[3], tbn.running_mean.numpy(), **TOL)
        np.testing.assert_allclose(w[4], keras_mv, **TOL)
        np.testing.assert_allclose(w[5], lin2.weight.detach().numpy().T, **TOL)
        np.testing.assert_allclose(w[6], lin2.bias.detach().numpy(), **TOL)
    # inference: fastlayers with its own moving statistics = torch eval with them
    with torch.no_grad():
        tbn.running_var.copy_(torch.from_numpy(model.get_weights()[4]))
        tmodel.eval()
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, **TOL)
