"""fl.distribute checks that need several ranks: run under an MPI launcher.

    mpirun -n 2 --oversubscribe python tests/distributed/mpi_checks.py          # every check
    mpirun -n 2 --oversubscribe python tests/distributed/mpi_checks.py NAME...  # some

Each rank asserts; any failure raises, which (through fl.distribute's exception
hook) aborts the job, so ``mpirun`` exits non-zero.  Rank 0 prints ``OK <name>``
per check and ``ALL OK size=N`` at the end.  The ``fail-*`` scenarios are not in
the default set: each ends the job on purpose (see test_mpi.py, which runs them).
"""
import os
import signal
import sys
import time

import numpy as np

import fastlayers as fl
from fastlayers import distribute as dist

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__.replace("_", "-")] = fn
    return fn


def rank_arrays(r, shapes, dtype):
    """The arrays rank ``r`` contributes: every rank can rebuild every other's."""
    rng = np.random.default_rng(1000 + r)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def gathered(value):
    """Every rank's float ``value`` (to compare ranks)."""
    out = np.zeros(dist.size())
    out[dist.rank()] = value
    return dist.allreduce(out, op="sum")


@check
def world():
    assert dist.size() >= 2, "run me under mpirun -n 2 (or more)"
    assert 0 <= dist.rank() < dist.size() and dist.is_primary() == (dist.rank() == 0)
    assert 0 <= dist.local_rank() < dist.local_size() <= dist.size()
    assert isinstance(dist.get_strategy(), dist.DataParallel)
    assert dist.resolve(None) is dist.get_strategy() and dist.resolve(False) is None
    dist.barrier()


@check
def cores_shared():
    # Each rank's OpenMP team gets its share of the cores, not all of them.
    total = os.cpu_count() or 1
    assert fl.backend.get_num_threads() <= max(1, total // dist.local_size()) or \
        fl.backend.get_num_threads() <= len(os.sched_getaffinity(0))


@check
def random_state_synced():
    # init() gave every rank rank 0's state: the same draws everywhere.
    draws = np.array([fl.utils.random.generator().random(), np.random.random()])
    assert np.array_equal(dist.allreduce(draws, op="max"), dist.allreduce(draws, op="min"))


@check
def allreduce_ops():
    n = dist.size()
    for dtype in (np.float32, np.float64):
        everyone = [rank_arrays(r, [(3, 5)], dtype)[0] for r in range(n)]
        mine = everyone[dist.rank()]
        before = mine.copy()
        tol = 1e-6 if dtype == np.float32 else 1e-14
        mean = dist.allreduce(mine, op="mean")
        assert mean.dtype == dtype and mean.shape == (3, 5)
        np.testing.assert_allclose(mean, np.mean(everyone, axis=0), rtol=tol, atol=tol)
        total = dist.allreduce(mine, op="sum")
        np.testing.assert_allclose(total, np.sum(everyone, axis=0), rtol=tol, atol=tol)
        np.testing.assert_array_equal(dist.allreduce(mine, op="max"), np.max(everyone, axis=0))
        np.testing.assert_array_equal(dist.allreduce(mine, op="min"), np.min(everyone, axis=0))
        np.testing.assert_array_equal(mine, before)  # the input is not modified
        # non-contiguous input
        np.testing.assert_allclose(dist.allreduce(mine.T, op="sum"),
                                   np.sum(everyone, axis=0).T, rtol=tol, atol=tol)
    assert dist.allreduce(dist.rank() + 1, op="sum") == n * (n + 1) // 2
    m = dist.allreduce(np.int64(dist.rank()), op="mean")
    assert m.dtype == np.float64 and m == (n - 1) / 2
    assert dist.allreduce(np.array([True, dist.rank() == 0]), op="sum").tolist() == [n, 1]


def small_model():
    model = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(3, name="frozen"),
                           fl.layers.Dense(2, name="head")])
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="mse")
    return model


@check
def broadcast_weights():
    model = small_model()
    for w in model.weights:  # rank-dependent values
        w.value[...] = dist.rank() + np.arange(w.value.size).reshape(w.shape)
    arrays = [w.value for w in model.weights]
    assert dist.weights_in_sync(model) is False
    strategy = dist.DataParallel()
    strategy.broadcast_weights(model, root=dist.size() - 1)
    assert all(w.value is a for w, a in zip(model.weights, arrays))  # in place
    for w in model.weights:
        expect = dist.size() - 1 + np.arange(w.value.size).reshape(w.shape)
        np.testing.assert_array_equal(w.value, expect)
    assert dist.weights_in_sync(model) is True
    assert strategy.stats["broadcast_bytes"] == sum(w.value.nbytes for w in model.weights)


@check
def begin_fit_aligns_weights_and_random_state():
    model = small_model()
    for w in model.weights:
        w.value[...] = dist.rank()
    fl.utils.random.generator().random(dist.rank() + 1)  # rank-dependent draws
    s = dist.DataParallel()
    s.begin_fit(model)
    assert dist.weights_in_sync(model) and all((w.value == 0).all() for w in model.weights)
    order = fl.utils.random.generator().permutation(50).astype(float)
    np.testing.assert_array_equal(dist.allreduce(order, op="max"),
                                  dist.allreduce(order, op="min"))


def gradient_shapes():
    return [(7, 5), (5,), (5, 300), (300,), (), (0, 4), (300, 2), (2,)]


@check
def reduce_gradients_bucketed():
    n = dist.size()
    shapes = gradient_shapes()
    for dtype in (np.float32, np.float64):
        tol = 1e-6 if dtype == np.float32 else 1e-14
        for bucket_bytes in (1, 2500, 10 ** 9):
            s = dist.DataParallel(bucket_bytes=bucket_bytes)
            for step in range(3):
                everyone = [rank_arrays(r * 10 + step, shapes, dtype) for r in range(n)]
                grads = [g.copy() for g in everyone[dist.rank()]]
                ids = [id(g) for g in grads]
                s.reduce_gradients(grads)
                assert [id(g) for g in grads] == ids
                for i, g in enumerate(grads):
                    assert g.dtype == dtype and g.shape == shapes[i]
                    np.testing.assert_allclose(g, np.mean([e[i] for e in everyone], axis=0),
                                               rtol=tol, atol=tol)
            payload = sum(int(np.prod(sh)) for sh in shapes) * np.dtype(dtype).itemsize
            st = s.stats
            assert st["steps"] == 3 and st["bytes_sent"] == 3 * payload
            assert st["bytes_last_step"] == payload
            assert st["ring_bytes_sent"] == 3 * payload * 2 * (n - 1) / n
            assert st["wait_seconds"] >= 0
            if bucket_bytes == 1:
                assert len(s.buckets) == len(shapes)
            if bucket_bytes == 10 ** 9:
                assert s.buckets == [list(reversed(range(len(shapes))))]
            assert sorted(i for b in s.buckets for i in b) == list(range(len(shapes)))


@check
def overlapped_out_of_order():
    """grad_ready in an order that differs between ranks still reduces correctly:
    buckets start in bucket order on every rank."""
    n = dist.size()
    shapes = gradient_shapes()
    s = dist.DataParallel(bucket_bytes=2500)
    everyone = [rank_arrays(r + 50, shapes, np.float64) for r in range(n)]
    grads = [g.copy() for g in everyone[dist.rank()]]
    s.begin_step(grads)
    order = np.random.default_rng(dist.rank() + 7).permutation(len(grads))
    for i in order:
        s.grad_ready(int(i))
    s.wait_all()
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, np.mean([e[i] for e in everyone], axis=0),
                                   rtol=1e-13, atol=1e-14)
    # start_bucket + wait_all starts the rest
    grads = [g.copy() for g in everyone[dist.rank()]]
    s.begin_step(grads)
    s.start_bucket(len(s.buckets) - 1)  # queued behind the earlier buckets
    s.wait_all()
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, np.mean([e[i] for e in everyone], axis=0),
                                   rtol=1e-13, atol=1e-14)


@check
def alternating_layouts():
    """Two models trained in turn through one strategy (a GAN's two halves): each layout
    keeps its own buckets, and each reduction is right."""
    n = dist.size()
    s = dist.DataParallel(bucket_bytes=2500)
    layouts = [gradient_shapes(), [(4, 3), (3,)]]
    for step in range(4):
        shapes = layouts[step % 2]
        everyone = [rank_arrays(r + 100 * step, shapes, np.float32) for r in range(n)]
        grads = [g.copy() for g in everyone[dist.rank()]]
        s.reduce_gradients(grads)
        for i, g in enumerate(grads):
            np.testing.assert_allclose(g, np.mean([e[i] for e in everyone], axis=0),
                                       rtol=1e-6, atol=1e-6)
    assert len(s._plans) == 2


@check
def weights_in_sync_sees_one_bit():
    model = small_model()
    for w in model.weights:
        w.value[...] = np.arange(w.value.size).reshape(w.shape)
    assert dist.weights_in_sync(model) is True
    if dist.rank() == 1:
        v = model.weights[-1].value
        v.view(np.uint32)[0] ^= 1  # one bit of one weight on one rank
    assert dist.weights_in_sync(model) is False
    assert dist.weights_in_sync([np.zeros((), dtype=np.float32)]) is True  # 0-d weights


@check
def frozen_weights_never_sent():
    model = small_model()
    trainable = model.compiled_trainable_weights
    assert {w.path for w in trainable} == {"head/kernel", "head/bias"}
    s = dist.DataParallel()
    grads = [np.ones_like(w.value) for w in trainable]
    s.reduce_gradients(grads)
    assert s.bytes_sent == sum(w.value.nbytes for w in trainable)
    assert s.bytes_sent < sum(w.value.nbytes for w in model.weights)


@check
def shard_and_weighted_mean():
    """A linear least-squares model trained by shard + reduce_gradients + SGD equals the
    single-process run on the same global batches (uneven last batch included)."""
    n, size, rank = 37, dist.size(), dist.rank()
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((n, 4)), rng.standard_normal((n, 2))
    w_single = np.zeros((4, 2))
    w_multi = np.zeros((4, 2))
    s = dist.DataParallel()
    order = np.random.default_rng(5).permutation(n)
    batch = 10
    for lo in range(0, n, batch):
        idx = order[lo:lo + batch]
        xb, yb = x[idx], y[idx]
        w_single -= 0.1 * xb.T @ (xb @ w_single - yb) / len(idx)
        local = s.shard(idx)
        assert s.global_rows == len(idx) and s.local_rows == len(local)
        lo_r = len(idx) * rank // size
        assert s.row_offset == lo_r and np.array_equal(local, idx[lo_r:lo_r + len(local)])
        xl, yl = x[local], y[local]
        g = xl.T @ (xl @ w_multi - yl) / max(len(local), 1)
        s.reduce_gradients([g])
        w_multi -= 0.1 * g
    np.testing.assert_allclose(w_multi, w_single, rtol=1e-12, atol=1e-14)
    # The shards tile the global batch in order.
    idx = np.arange(11)
    assert np.array_equal(s.allgather_rows(s.shard(idx)), idx)


@check
def empty_shard_counts_as_zero():
    s = dist.DataParallel()
    local = s.shard(np.array([42]))  # one row for size ranks: all but one get none
    g = np.full(3, np.nan if len(local) == 0 else 2.0)
    s.reduce_gradients([g])
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])


@check
def scalars():
    s = dist.DataParallel()
    n = dist.size()
    v = s.reduce_scalars(np.array([dist.rank() + 1.0, 2.0], dtype=np.float32))
    assert v.dtype == np.float64 and v.tolist() == [n * (n + 1) / 2, 2.0 * n]
    assert s.reduce_scalars([dist.rank()], op="max").tolist() == [n - 1]
    assert s.stats["scalar_bytes"] == 24


@check
def allgather_rows_uneven():
    s = dist.DataParallel()
    r = dist.rank()
    mine = np.full((r + 1, 2), r, dtype=np.float32)
    out = s.allgather_rows(mine)
    expect = np.concatenate([np.full((k + 1, 2), k, dtype=np.float32)
                             for k in range(dist.size())])
    np.testing.assert_array_equal(out, expect)


@check
def layout_mismatch_is_an_error_on_every_rank():
    s = dist.DataParallel()
    shape = (3,) if dist.rank() == 0 else (4,)
    try:
        s.reduce_gradients([np.zeros(shape)])
    except ValueError as exc:
        assert "rank(s) [1" in str(exc), exc
    else:
        raise AssertionError("no ValueError")
    dist.barrier()


# --------------------------------------------------------------------------- failures
# Each ends the job: rank 1 fails mid-"epoch" while rank 0 keeps exchanging gradients.

def _train_until_failure(fail):
    # The short timeout of a failure test (FAIL_TIMEOUT) applies only once every rank
    # has started: a slow start on a busy machine must not pass for the failure.
    dist.barrier()
    dist.init(timeout=float(os.environ.get("FAIL_TIMEOUT", "30")))
    s = dist.DataParallel()
    grads = [np.ones(1000)]
    for step in range(10 ** 6):
        if dist.rank() == 1 and step == 20:
            fail()
        s.reduce_gradients(grads)
    raise AssertionError("the job should have ended")


@check
def fail_killed():
    _train_until_failure(lambda: os.kill(os.getpid(), signal.SIGKILL))


@check
def fail_hung():
    _train_until_failure(lambda: time.sleep(3600))


@check
def fail_raised():
    def boom():
        raise RuntimeError("rank 1 broke on purpose")
    _train_until_failure(boom)


@check
def fail_exited():
    _train_until_failure(lambda: sys.exit(0))


def main(argv):
    dist.init()
    names = argv or [name for name in CHECKS if not name.startswith("fail-")]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise SystemExit(f"unknown checks {unknown}; known: {sorted(CHECKS)}")
    for name in names:
        fl.utils.set_random_seed(1234)
        CHECKS[name]()
        dist.barrier()
        if dist.is_primary():
            print(f"OK {name}", flush=True)
    if dist.is_primary():
        print(f"ALL OK size={dist.size()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
