"""Run under ``mpirun -n N``: a data-parallel ``fit`` equals a one-process ``fit``.

Every rank trains two identical models on the same global batches: one with
``distribute=DataParallel()`` (its shard of each batch, gradients averaged across
ranks), one alone with ``distribute=False`` (the whole batch).  Their weights must
agree (float64 to 1e-10, float32 to 1e-5), be identical on every rank, frozen
weights must never change nor be sent.  A synchronized BatchNormalization trains as
on one process (a frozen one is the native inference op); ``evaluate``/``predict``
shard the rows and give the one-process results.  Exits non-zero on the first failure.
"""
import sys

import numpy as np

import fastlayers as fl
from fastlayers.layers import BatchNormalization, Dense, Dropout


def data(dtype, n=96, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def mlp(dtype, freeze=False, shared=False, dropout=False, bn=False):
    fl.backend.set_floatx(dtype)
    fl.utils.set_random_seed(5)
    inp = fl.Input((6,))
    first = Dense(8, activation="tanh", name="first")
    h = first(inp)
    if dropout:
        h = Dropout(0.3, seed=11)(h)
    if bn:
        # Synchronized: statistics of the global batch, so 2 ranks equal 1 process.
        h = BatchNormalization(synchronized=True, momentum=0.8, name="bn")(h)
    if shared:
        sq = Dense(8, activation="tanh", name="sq")
        h = sq(sq(h))
    out = Dense(3, name="head")(h)
    m = fl.Model(inp, out)
    if freeze:
        first.trainable = False
    return m


def check(name, make, opt, dtype, batch=24, epochs=2):
    x, y = data(dtype)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    models = []
    strategy = fl.distribute.DataParallel()
    for dist in (strategy, False):
        m = make(dtype)
        m.compile(opt(), fl.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = m.get_weights()
        fl.utils.set_random_seed(9)  # the same shuffles for both runs
        m.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, distribute=dist)
        models.append((m, before))
    (a, a0), (b, b0) = models
    for wa, wb, w in zip(a.get_weights(), b.get_weights(), a.weights):
        np.testing.assert_allclose(wa, wb, err_msg=f"{name}: {w.path}", **tol)
    for w, before, after in zip(a.weights, a0, a.get_weights()):
        # Moving statistics are state, not frozen weights: fit updates them.
        if not any(w is t for t in a.compiled_trainable_weights) and "moving_" not in w.path:
            assert np.array_equal(before, after), f"{name}: frozen {w.path} moved"
    assert fl.distribute.weights_in_sync(a), f"{name}: ranks differ"
    sent = strategy.stats["bytes_sent"]
    trained = sum(w.value.nbytes for w in a.compiled_trainable_weights)
    steps = epochs * ((len(x) + batch - 1) // batch)
    assert sent == trained * steps, f"{name}: {sent} bytes sent, expected {trained * steps}"
    if fl.distribute.is_primary():
        print(f"ok {name} {dtype}: {sent} bytes exchanged")


def check_frozen_sync_bn(dtype):
    """R7: a frozen synchronized BN runs the native inference op, exchanging nothing."""
    m = mlp(dtype, bn=True)
    m.get_layer("bn").trainable = False
    m.compile(fl.optimizers.SGD(0.1), fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    kinds = [op.kind.name for op in m.step_program.ops if op.layer.name == "bn"]
    assert kinds == ["BATCHNORM"], f"frozen sync-bn lowered as {kinds}"
    live = mlp(dtype, bn=True)
    live.compile(fl.optimizers.SGD(0.1), "mse")
    kinds = [op.kind.name for op in live.step_program.ops if op.layer.name == "bn"]
    assert kinds == ["CALLBACK"], f"sync-bn under mpirun lowered as {kinds}"
    if fl.distribute.is_primary():
        print(f"ok frozen-sync-bn {dtype}")


def check_evaluate_predict(dtype):
    """evaluate/predict shard the rows over the ranks and gather them in order: the same
    values as one process on all the data (odd row counts, sample weights, two outputs)."""
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    x, y = data(dtype, n=51)
    sw = np.linspace(0.5, 2.0, len(x))
    m = mlp(dtype)
    m.compile(fl.optimizers.SGD(0.1), fl.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    inp = fl.Input((6,))
    two = fl.Model(inp, [Dense(2, name="a")(inp), Dense(3, name="b")(inp)])
    strategy = fl.distribute.get_strategy()
    gathered = []
    gather = strategy.allgather_rows
    strategy.allgather_rows = lambda a: gathered.append(len(a)) or gather(a)
    scalars = strategy.stats["scalar_bytes"]
    results = []
    for s in (strategy, None):
        fl.distribute.set_strategy(s)
        results.append([m.predict(x, batch_size=8, verbose=0),
                        *two.predict(x, batch_size=5, verbose=0),
                        m.evaluate(x, y, batch_size=8, verbose=0),
                        m.evaluate(x, y, batch_size=7, verbose=0, sample_weight=sw),
                        m.predict(x[:1], verbose=0)])
    fl.distribute.set_strategy(strategy)
    del strategy.allgather_rows
    # Sharded: three outputs gathered, each from this rank's rows (the 1-row predict is
    # not: fewer rows than ranks), and the evaluations reduced.
    r, size = fl.distribute.rank(), fl.distribute.size()
    assert gathered == [len(x) * (r + 1) // size - len(x) * r // size] * 3, gathered
    assert strategy.stats["scalar_bytes"] > scalars
    for i, (a, b) in enumerate(zip(*results)):
        np.testing.assert_allclose(a, b, err_msg=f"evaluate/predict {i}", **tol)
    if fl.distribute.is_primary():
        print(f"ok evaluate-predict {dtype}")


def check_gan(dtype, rounds=3, batch=16):
    """GAN idiom, alternating two compiled models that share d: the same on N ranks as on one."""
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(3)
    real = rng.standard_normal((32, 6)).astype(dtype)
    z = rng.standard_normal((32, 4)).astype(dtype)
    results = []
    for dist in (fl.distribute.DataParallel(), False):
        fl.backend.set_floatx(dtype)
        fl.utils.set_random_seed(21)
        g = fl.Sequential([Dense(8, activation="tanh", input_shape=(4,)), Dense(6)])
        d = fl.Sequential([Dense(8, activation="tanh", input_shape=(6,)), Dense(1)])
        bce = fl.losses.BinaryCrossentropy(from_logits=True)
        d.compile(fl.optimizers.Adam(0.01), bce)
        d.trainable = False
        zi = fl.Input((4,))
        gan = fl.Model(zi, d(g(zi)))
        gan.compile(fl.optimizers.SGD(0.05, momentum=0.5), bce)
        fl.utils.set_random_seed(4)
        for _ in range(rounds):
            fake = g.predict(z, verbose=0)
            xs = np.concatenate([real, fake])
            ys = np.concatenate([np.ones((32, 1)), np.zeros((32, 1))]).astype(dtype)
            d.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, distribute=dist)
            gan.fit(z, np.ones((32, 1), dtype), batch_size=batch, epochs=1, verbose=0,
                    distribute=dist)
        results.append(g.get_weights() + d.get_weights())
    for wa, wb in zip(*results):
        np.testing.assert_allclose(wa, wb, err_msg="gan", **tol)
    if fl.distribute.is_primary():
        print(f"ok gan {dtype}")


def main():
    fl.distribute.init()
    opts = {"sgd": lambda: fl.optimizers.SGD(0.1),
            "momentum": lambda: fl.optimizers.SGD(0.1, momentum=0.9),
            "adam": lambda: fl.optimizers.Adam(0.01)}
    for dtype in ("float64", "float32"):
        for oname, opt in opts.items():
            check(f"plain-{oname}", mlp, opt, dtype)
        check("frozen", lambda d: mlp(d, freeze=True), opts["momentum"], dtype)
        check("shared", lambda d: mlp(d, shared=True), opts["adam"], dtype)
        check("dropout", lambda d: mlp(d, dropout=True), opts["sgd"], dtype)
        check("sync-bn", lambda d: mlp(d, bn=True), opts["momentum"], dtype)
        check_frozen_sync_bn(dtype)
        check_gan(dtype)
        check_evaluate_predict(dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
