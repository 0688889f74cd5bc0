"""The fuzz itself (random models, random calls through the public API), run by
``test_fuzz.py`` in a child process so that a crash fails one test, not the suite."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlayers as fl
from fastlayers.layers import Add, BatchNormalization, Concatenate, Dense, Dropout, Flatten

ACTS = ["linear", "relu", "tanh", "sigmoid", "softmax", "elu", "softplus"]


def np_act(z, act):
    if act == "linear":
        return z
    if act == "relu":
        return np.maximum(z, 0)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if act == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if act == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if act == "softplus":
        return np.logaddexp(z, 0)
    raise AssertionError(act)


def all_layers(layer):
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from all_layers(sub)


def snapshot(model):
    """Everything a failing call must leave bit-identical."""
    weights = [np.array(w, copy=True) for w in model.get_weights()]
    opt = [a.copy() for a in model.optimizer.get_state(model.trainable_weights)]
    counters = [int(l._counter[0]) for l in all_layers(model) if hasattr(l, "_counter")]
    return weights, opt, counters


def same(a, b):
    wa, oa, ca = a
    wb, ob, cb = b
    return (len(wa) == len(wb) and all(x.tobytes() == y.tobytes() for x, y in zip(wa, wb))
            and len(oa) == len(ob) and all(x.tobytes() == y.tobytes() for x, y in zip(oa, ob))
            and ca == cb)


def make_optimizer(draw):
    kind = draw(st.sampled_from(["sgd", "sgdm", "nesterov", "rmsprop", "rmspropm", "adam",
                                 "adamw", "adagrad", "nadam", "adamax"]))
    O = fl.optimizers
    return {
        "sgd": lambda: O.SGD(0.01),
        "sgdm": lambda: O.SGD(0.01, momentum=0.9),
        "nesterov": lambda: O.SGD(0.01, momentum=0.5, nesterov=True),
        "rmsprop": lambda: O.RMSprop(0.001),
        "rmspropm": lambda: O.RMSprop(0.001, momentum=0.5),
        "adam": lambda: O.Adam(0.001),
        "adamw": lambda: O.AdamW(0.001),
        "adagrad": lambda: O.Adagrad(0.01),
        "nadam": lambda: O.Nadam(0.001),
        "adamax": lambda: O.Adamax(0.001),
    }[kind]()


def make_model(draw):
    """A random model; returns (model, in_shape, k, dense_only_spec or None, frozen layers)."""
    fl.utils.set_random_seed(draw(st.integers(0, 1000)))
    nd = draw(st.booleans())
    in_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if nd else (draw(st.integers(1, 5)),)
    k = draw(st.integers(1, 4))
    last = draw(st.sampled_from(["linear", "sigmoid", "softmax", "tanh"]))
    frozen = []
    functional = draw(st.booleans())
    if not functional:
        layers = [fl.Input(in_shape)]
        if nd:
            layers.append(Flatten())
        dense_only = True
        for _ in range(draw(st.integers(0, 3))):
            what = draw(st.sampled_from(["dense", "dense", "dropout", "bn"]))
            if what == "dense":
                d = Dense(draw(st.integers(1, 6)), activation=draw(st.sampled_from(ACTS)))
                if draw(st.integers(0, 3)) == 0:
                    d.trainable = False
                    frozen.append(d)
                layers.append(d)
            elif what == "dropout":
                layers.append(Dropout(draw(st.sampled_from([0.0, 0.25, 0.5]))))
            else:
                dense_only = False
                bn = BatchNormalization()
                if draw(st.integers(0, 2)) == 0:
                    bn.trainable = False      # frozen: inference mode, statistics kept
                    frozen.append(bn)
                layers.append(bn)
        layers.append(Dense(k, activation=last))
        model = fl.Sequential(layers)
        return model, in_shape, k, dense_only, frozen
    inp = fl.Input(in_shape)
    x = Flatten()(inp) if nd else inp
    u = draw(st.integers(1, 5))
    h1 = Dense(u, activation=draw(st.sampled_from(ACTS)))(x)
    h2 = Dense(u, activation=draw(st.sampled_from(ACTS)))(x)
    if draw(st.booleans()):
        h2 = Dropout(0.3)(h2)
    if draw(st.booleans()):
        h1 = BatchNormalization()(h1)
    shared = Dense(u, activation=draw(st.sampled_from(ACTS)))
    if draw(st.integers(0, 3)) == 0:
        shared.trainable = False
        frozen.append(shared)
    a, b = shared(h1), shared(h2)
    merged = Add()([a, b]) if draw(st.booleans()) else Concatenate()([a, b])
    width = merged.shape[-1]
    if draw(st.booleans()):
        ci = fl.Input((width,))
        inner_layer = Dense(width, activation="tanh")
        inner_bn = BatchNormalization()
        inner = fl.Container(ci, inner_bn(inner_layer(ci)))
        inner.trainable = False
        frozen += [inner_layer, inner_bn]
        merged = inner(merged)
    out = Dense(k, activation=last)(merged)
    return fl.Model(inp, out), in_shape, k, False, frozen


def make_targets(loss, n, k, rng):
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, k, n)
    if loss == "categorical_crossentropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if loss == "binary_crossentropy":
        return (rng.random((n, k)) > 0.5).astype("float64")
    return rng.standard_normal((n, k))


def layout(x, how):
    """The same values in another dtype or memory layout."""
    if how == "float64":
        return x.astype("float64")
    if how == "int":
        return np.rint(x * 2).astype(np.int64)
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "strided":
        big = np.zeros((x.shape[0] * 2,) + x.shape[1:], x.dtype)
        big[::2] = x
        return big[::2]
    if how == "readonly":
        x = x.copy()
        x.setflags(write=False)
        return x
    return x


def numpy_forward(model, x):
    """Sequential Dense/Dropout/Flatten model in inference mode, float64."""
    h = np.asarray(x, dtype="float64").reshape(len(x), -1)
    for layer in model.layers:
        if isinstance(layer, Dense):
            W, b = layer.get_weights()
            h = np_act(h @ W.astype("float64") + b, layer.get_config()["activation"])
    return h


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def fuzz_models(data):
    draw = data.draw
    floatx = fl.backend.floatx()
    fl.backend.set_floatx(draw(st.sampled_from(["float32", "float64"])))
    try:
        model, in_shape, k, dense_only, frozen = make_model(draw)
    finally:
        fl.backend.set_floatx(floatx)
    # Cross-entropies on probabilities only: on a linear output they are 0/0 where the
    # outputs sum to zero (in Keras too), which is not a finite-result case.
    last = model.layers[-1].get_config()["activation"]
    losses = ["mse", "mae"]
    if last in ("sigmoid", "softmax"):
        losses.append("binary_crossentropy")
    if last == "softmax" and k > 1:
        losses += ["categorical_crossentropy", "sparse_categorical_crossentropy"]
    loss = draw(st.sampled_from(losses))
    model.compile(make_optimizer(draw), loss)
    frozen_before = [[w.copy() for w in l.get_weights()] for l in frozen]
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 9))
        x = layout(rng.standard_normal((n,) + in_shape).astype("float32"),
                   draw(st.sampled_from(["float32", "float64", "int", "fortran", "strided",
                                         "readonly"])))
        y = make_targets(loss, n, k, rng)
        call = draw(st.sampled_from(["fit", "train_on_batch", "evaluate", "predict",
                                     "test_on_batch", "bad"]))
        bs = draw(st.integers(1, n + 1))
        if call == "fit":
            sw = rng.random(n) if draw(st.booleans()) else None
            split = draw(st.sampled_from([0.0, 0.0, 0.3])) if n >= 4 else 0.0
            h = model.fit(x, y, batch_size=bs, epochs=draw(st.integers(1, 2)), verbose=0,
                          shuffle=draw(st.booleans()), sample_weight=sw, validation_split=split)
            assert all(np.isfinite(v).all() for v in h.history["loss"]), h.history
        elif call == "train_on_batch":
            assert np.isfinite(model.train_on_batch(x, y)).all()
        elif call == "evaluate":
            assert np.isfinite(model.evaluate(x, y, batch_size=bs, verbose=0)).all()
        elif call == "test_on_batch":
            assert np.isfinite(model.test_on_batch(x, y)).all()
        elif call == "predict":
            p = model.predict(x, batch_size=bs, verbose=0)
            assert p.shape == (n, k) and np.isfinite(p).all()
            if dense_only:
                ref = numpy_forward(model, x)
                tol = 1e-4 if p.dtype == np.float32 else 1e-10
                np.testing.assert_allclose(p, ref, rtol=tol, atol=tol)
        else:
            before = snapshot(model)
            bad = draw(st.sampled_from(["features", "rows", "labels", "nan_batch"]))
            try:
                if bad == "features":
                    model.train_on_batch(np.zeros((n,) + tuple(d + 1 for d in in_shape)), y)
                elif bad == "rows":
                    model.fit(x, make_targets(loss, n + 1, k, rng), verbose=0)
                elif bad == "labels":
                    yy = np.full(n, k + 3) if loss == "sparse_categorical_crossentropy" else \
                        np.zeros((n, k + 2))
                    model.train_on_batch(x, yy)
                else:
                    model.fit(x, y, batch_size=float("nan"), verbose=0)
            except (ValueError, TypeError):
                pass
            else:
                raise AssertionError(f"bad call {bad!r} did not raise")
            assert same(before, snapshot(model)), f"state changed by failing call {bad!r}"
    # Every example ends with a predict: against NumPy (Dense-only), and bit-identical
    # whatever the dtype or memory layout the same values arrive in.
    n = draw(st.integers(1, 9))
    bs = draw(st.integers(1, n + 1))
    x = layout(rng.standard_normal((n,) + in_shape).astype("float32"),
               draw(st.sampled_from(["float64", "int", "fortran", "strided", "readonly"])))
    p = model.predict(x, batch_size=bs, verbose=0)
    assert p.shape == (n, k) and np.isfinite(p).all()
    plain = np.ascontiguousarray(np.asarray(x, dtype=p.dtype))
    assert p.tobytes() == model.predict(plain, batch_size=bs, verbose=0).tobytes()
    if dense_only:
        tol = 1e-4 if p.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(p, numpy_forward(model, x), rtol=tol, atol=tol)
    for l, ws in zip(frozen, frozen_before):
        for a, b in zip(l.get_weights(), ws):
            assert a.tobytes() == b.tobytes(), f"frozen layer {l.name} moved"


if __name__ == "__main__":
    fuzz_models()
    print("FUZZ-OK")
