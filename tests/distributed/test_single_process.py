"""fl.distribute in one process: size 1 everywhere, no MPI import, clear errors."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import distribute as dist
from fastlayers.distribute import _world

LAUNCHER_VARS = _world._LAUNCHER_SIZE_VARS + _world._LAUNCHER_RANK_VARS


@pytest.fixture(autouse=True)
def fresh_world(monkeypatch):
    for var in LAUNCHER_VARS + ("FASTLAYERS_DISTRIBUTE_TIMEOUT",):
        monkeypatch.delenv(var, raising=False)
    _world._reset_for_tests()
    yield
    _world._reset_for_tests()


@pytest.fixture
def no_mpi4py(monkeypatch):
    # A None entry makes `import mpi4py` raise ImportError.
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)


def test_import_and_init_never_load_mpi_outside_a_launcher(tmp_path):
    code = ("import sys, fastlayers as fl; assert 'mpi4py' not in sys.modules; "
            "assert fl.distribute.init() == 0 and fl.distribute.size() == 1; "
            "fl.distribute.DataParallel(); "
            "assert 'mpi4py.MPI' not in sys.modules, 'MPI was started'; print('clean')")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(Path(fl.__file__).resolve().parents[1])
    if importlib.util.find_spec("mpi4py") is None:
        code = code.replace("fl.distribute.DataParallel(); ", "")
    # cwd: not the checkout, whose unbuilt sources `python -c` would import first.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


def test_world_of_one():
    assert dist.init() == 0
    assert (dist.rank(), dist.size(), dist.local_rank(), dist.local_size()) == (0, 1, 0, 1)
    assert dist.is_primary() and dist.get_strategy() is None and dist.resolve(None) is None
    assert dist.init(timeout=5) == 0 and _world.WORLD.timeout == 5.0  # again: timeout only
    dist.barrier()


def test_a_launcher_of_one_process_is_a_world_of_one(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert dist.init() == 0 and dist.size() == 1 and _world.WORLD.MPI is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["mean", "sum", "min", "max"])
def test_allreduce_of_one_is_a_copy(dtype, op):
    a = np.arange(6, dtype=dtype).reshape(2, 3)[:, ::2]  # non-contiguous
    out = dist.allreduce(a, op=op)
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)
    out[...] = -1
    assert a[0, 0] == 0  # never aliased


def test_allreduce_dtypes_and_errors():
    assert dist.allreduce(3, op="mean") == 3.0 and dist.allreduce(3, op="mean").dtype == np.float64
    assert dist.allreduce(np.int32(3), op="sum").dtype == np.int32
    assert dist.allreduce(np.array([True, False]), op="sum").dtype == np.int64
    with pytest.raises(ValueError, match="allreduce: op must be one of"):
        dist.allreduce(np.ones(2), op="avg")
    with pytest.raises(TypeError, match="numeric array"):
        dist.allreduce(np.array(["a"]))


def test_broadcast_weights_of_one():
    model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])
    before = [w.value for w in model.weights]
    values = model.get_weights()
    assert dist.broadcast_weights(model) == 0
    assert all(w.value is a for w, a in zip(model.weights, before))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), values))
    assert dist.weights_in_sync(model)
    with pytest.raises(ValueError, match="root must be a rank in 0..0"):
        dist.broadcast_weights(model, root=1)
    with pytest.raises(ValueError, match="writable C-contiguous"):
        dist.broadcast_weights([np.ones((2, 2))[:, :1]])
    with pytest.raises(TypeError, match="not a NumPy array"):
        dist.broadcast_weights([[1.0, 2.0]])


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout must be a positive"):
        dist.init(timeout=0)


class TestWithoutMpi4py:
    def test_init_is_a_world_of_one(self, no_mpi4py):
        assert dist.init() == 0 and dist.size() == 1

    def test_init_under_a_launcher_warns(self, no_mpi4py, monkeypatch):
        monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
        with pytest.warns(RuntimeWarning, match=r'pip install "fastlayers\[mpi\]"'):
            assert dist.init() == 0
        assert dist.size() == 1

    def test_asking_for_mpi_names_the_extra(self, no_mpi4py):
        with pytest.raises(ImportError,
                           match=r'init needs mpi4py .*pip install "fastlayers\[mpi\]"'):
            dist.init(use_mpi=True)

    def test_data_parallel_names_the_extra(self, no_mpi4py):
        with pytest.raises(ImportError,
                           match=r'DataParallel needs mpi4py .*pip install "fastlayers\[mpi\]"'):
            dist.DataParallel()

    def test_everything_else_works(self, no_mpi4py):
        dist.init()
        assert dist.allreduce(np.ones(3), op="sum").tolist() == [1.0, 1.0, 1.0]
        dist.barrier()


@pytest.fixture
def strategy():
    pytest.importorskip("mpi4py")  # only asks whether it is installed: MPI is not started
    return dist.DataParallel(bucket_bytes=100)


def test_data_parallel_of_one_changes_nothing(strategy):
    assert _world.WORLD.MPI is None
    assert (strategy.rank, strategy.size, strategy.is_primary) == (0, 1, True)
    grads = [np.arange(30, dtype=np.float32).reshape(5, 6), np.ones(40), np.ones(3)]
    copies = [g.copy() for g in grads]
    strategy.reduce_gradients(grads)
    for g, c in zip(grads, copies):
        np.testing.assert_array_equal(g, c)
    # Buckets from the end of the list, each at most bucket_bytes (or one gradient);
    # a new dtype opens a new bucket.
    assert strategy.buckets == [[2], [1], [0]] and strategy.bucket_of(0) == 2
    assert strategy.stats["bytes_sent"] == 0 and strategy.bytes_sent == 0
    assert strategy.reduce_scalars([1.5, 2]).tolist() == [1.5, 2.0]
    idx = np.array([5, 3, 9])
    np.testing.assert_array_equal(strategy.shard(idx), idx)
    assert (strategy.row_offset, strategy.local_rows, strategy.global_rows) == (0, 3, 3)
    np.testing.assert_array_equal(strategy.allgather_rows(idx), idx)
    strategy.begin_step(grads)
    strategy.grad_ready(0)
    strategy.start_bucket(0)
    strategy.wait_all()
    assert "rank=0 size=1" in repr(strategy)


def test_data_parallel_errors(strategy):
    with pytest.raises(TypeError, match="gradient 1 must be a float NumPy array"):
        strategy.reduce_gradients([np.ones(2), np.ones(2, dtype=np.int64)])
    ro = np.ones(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="gradient 0 is read-only"):
        strategy.reduce_gradients([ro])
    with pytest.raises(ValueError, match="1-D array of row indices"):
        strategy.shard(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="bucket_bytes must be a positive integer"):
        dist.DataParallel(bucket_bytes=0)
    with pytest.raises(ValueError, match="reduce_scalars: op must be one of"):
        strategy.reduce_scalars([1.0], op="prod")


def test_default_strategy_and_resolve(strategy):
    assert dist.resolve(strategy) is strategy and dist.resolve(False) is None
    dist.set_strategy(strategy)
    assert dist.get_strategy() is strategy and dist.resolve(None) is strategy
    dist.set_strategy(None)
    assert dist.get_strategy() is None
    with pytest.raises(TypeError, match="expected a DataParallel or None"):
        dist.set_strategy("mpi")
    with pytest.raises(TypeError, match="distribute must be a fl.distribute.DataParallel"):
        dist.resolve(True)
