"""The kernels' thread team: defaults from the environment, one process-wide setting,
BLAS kept single-threaded under threadpoolctl, fork, and OpenMP's wait policy.

What depends on the environment (variables, affinity, fork) runs in a fresh
interpreter with a timeout, so a hang or a crash fails one test.
"""
import ctypes
import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import _threads
from fastlayers._kernels import dense

ROOT = Path(fl.__file__).resolve().parents[1]
CORES = _threads.usable_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="needs two usable cores")


def run_python(code, env=None, timeout=60):
    """Run `code` in a fresh interpreter on this checkout; its stdout, stripped."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def kernel_modules():
    import fastlayers._kernels as pkg

    return [importlib.import_module(f"fastlayers._kernels.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__)]


@pytest.fixture
def restore_threads():
    yield
    fl.backend.set_num_threads(None)


@pytest.fixture(autouse=True)
def clean_team_state():
    # The starvation guard reacts to this (busy, shared) machine: start each test
    # from a clean record.  And a library sharing our OpenMP runtime may have
    # lowered this thread's OpenMP limit, which lowers the team here (torch's
    # set_num_threads does, in tests/training): lift it for the test.
    omp = ctypes.CDLL("libgomp.so.1")  # the runtime already loaded by the kernels
    before = dense._omp_max_threads()
    omp.omp_set_num_threads(_threads._STATE.omp_default)
    _threads.reset_guard()
    yield
    _threads.reset_guard()
    omp.omp_set_num_threads(before)


def team_in_new_thread(module=dense):
    seen = []
    t = threading.Thread(target=lambda: seen.append(module.get_team()))
    t.start()
    t.join()
    return seen[0]


def mlp(batch=64):
    rng = np.random.default_rng(0)
    model = fl.Sequential([fl.layers.Dense(256, activation="relu", input_shape=(784,)),
                           fl.layers.Dense(10)])
    model.compile(optimizer="sgd", loss="mse")
    return model, rng.standard_normal((batch, 784)).astype(np.float32), \
        rng.standard_normal((batch, 10)).astype(np.float32)


# --- 1. the default team -------------------------------------------------------------

REPORT = """
import threading
import fastlayers as fl
from fastlayers._kernels import dense, losses
seen = []
t = threading.Thread(target=lambda: seen.append(losses.get_team()))
t.start(); t.join()
print(fl.backend.get_num_threads(), dense.get_team(), seen[0])
"""


def test_default_team_is_the_usable_cores_and_import_leaves_the_environment():
    out = run_python("import os; before = dict(os.environ)\n" + REPORT +
                     "print(dict(os.environ) == before, 'GOMP_SPINCOUNT' in os.environ)")
    assert out.split("\n") == [f"{CORES} {CORES} {CORES}", "True False"]


def test_default_team_honours_omp_num_threads():
    # ...and set_num_threads overrides it, in every thread.
    out = run_python(REPORT + "fl.backend.set_num_threads(2)\n" + REPORT[REPORT.index("seen"):],
                     env={"OMP_NUM_THREADS": "1"})
    two = min(2, CORES)
    assert out.split("\n") == ["1 1 1", f"{two} {two} {two}"]


@pytest.mark.parametrize("value, expected", [("1", 1), ("1,4", 1), (" 1 ", 1), ("64", CORES),
                                             ("0", CORES), ("many", CORES), ("", CORES)])
def test_omp_num_threads_is_read_as_openmp_does(monkeypatch, value, expected):
    # 64 is capped at the usable cores; values OpenMP rejects are ignored, as it does.
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _threads.default_team() == expected


def test_default_team_honours_the_affinity_mask():
    # What `taskset -c <cpu>` does, applied before fastlayers (and OpenMP) load.
    cpu = min(os.sched_getaffinity(0))
    out = run_python(f"import os; os.sched_setaffinity(0, {{{cpu}}})\n" + REPORT)
    assert out == "1 1 1"


# --- 2. one process-wide setting ----------------------------------------------------

def test_every_kernel_module_reads_the_process_wide_team(restore_threads):
    modules = kernel_modules()
    assert {m.__name__.rsplit(".", 1)[1] for m in modules} >= {
        "dense", "activations", "dropout", "batchnorm", "optim", "losses"}
    for m in modules:
        assert m._team_bound(), f"{m.__name__} does not include _team.pxi"
    fl.backend.set_num_threads(1)
    assert {m.get_team() for m in modules} == {1}


@needs_two_cores
def test_set_num_threads_reaches_every_thread(restore_threads):
    fl.backend.set_num_threads(1)
    assert team_in_new_thread() == 1
    assert dense.get_team() == 1
    worker = threading.Thread(target=fl.backend.set_num_threads, args=(2,))
    worker.start()
    worker.join()
    assert dense.get_team() == 2 and team_in_new_thread() == 2
    assert fl.backend.get_num_threads() == 2
    fl.backend.set_num_threads(None)
    assert dense.get_team() == _threads.default_team() == CORES


def test_results_do_not_depend_on_the_team(restore_threads):
    out = []
    for n in (1, CORES):
        fl.backend.set_num_threads(n)
        fl.utils.set_random_seed(3)
        model, x, y = mlp(batch=256)  # large enough for the split products
        model.train_on_batch(x, y)
        out.append(model.predict_on_batch(x))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)


# --- 3. set_num_threads's arguments -------------------------------------------------

def test_set_num_threads_caps_at_the_usable_cores(restore_threads):
    fl.backend.set_num_threads(1000)
    assert fl.backend.get_num_threads() == CORES
    assert dense.get_team() == CORES
    fl.backend.set_num_threads(np.int64(1))
    assert fl.backend.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, -1000])
def test_set_num_threads_rejects_non_positive(bad, restore_threads):
    fl.backend.set_num_threads(1)
    with pytest.raises(ValueError, match=r"set_num_threads: n must be a positive int"):
        fl.backend.set_num_threads(bad)
    assert fl.backend.get_num_threads() == 1


@pytest.mark.parametrize("bad", [2.0, 1.5, "2", True, [2], float("nan")])
def test_set_num_threads_rejects_non_integers(bad, restore_threads):
    fl.backend.set_num_threads(1)
    with pytest.raises(TypeError, match=r"set_num_threads: n must be a positive int"):
        fl.backend.set_num_threads(bad)
    assert fl.backend.get_num_threads() == 1


# --- 4. threadpoolctl and the BLAS's own threads ---------------------------------------

def test_kernels_put_scipy_blas_back_to_one_thread():
    if _threads.blas_threads() is None:
        pytest.skip("scipy's OpenBLAS was not found (another BLAS)")
    _threads._BLAS_SET(2)  # what threadpoolctl.threadpool_limits(2) does to it
    assert _threads.blas_threads() == 2
    model, x, y = mlp()
    model.train_on_batch(x, y)
    assert _threads.blas_threads() == 1


def test_threadpool_limits_blas_does_not_thread_inside_the_split():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if _threads.blas_threads() is None:
        pytest.skip("scipy's OpenBLAS was not found (another BLAS)")
    model, x, y = mlp()
    with threadpoolctl.threadpool_limits(2):
        assert dense.get_team() == CORES
        model.train_on_batch(x, y)
        assert _threads.blas_threads() == 1
    assert _threads.blas_threads() == 1


@needs_two_cores
def test_threadpool_limits_on_openmp_lowers_the_team_of_its_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    model, x, y = mlp(batch=256)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert dense.get_team() == 1
        assert team_in_new_thread() == CORES  # threadpoolctl's limit is per thread
        model.train_on_batch(x, y)
    assert dense.get_team() == CORES
    with threadpoolctl.threadpool_limits(CORES + 4, user_api="openmp"):
        assert dense.get_team() == CORES  # a limit above the team changes nothing


# --- 6a. the starvation guard ------------------------------------------------------------

MS = 1_000_000  # ns


@needs_two_cores
def test_guard_drops_to_one_thread_when_products_keep_waiting(restore_threads):
    fl.backend.set_num_threads(2)
    for _ in range(5):
        dense._observe_split(10 * MS, 1 * MS)  # waited 9 ms on a 1 ms slice
    assert dense.get_team() == 2
    dense._observe_split(10 * MS, 1 * MS)
    # Every module and thread now runs single-threaded, for 0.25 s.
    assert {m.get_team() for m in kernel_modules()} == {1}
    assert team_in_new_thread() == 1
    assert _threads._STATE.serial_until - _threads._STATE.serial_since == 250 * MS
    # A second backoff in a row lasts twice as long.
    for _ in range(6):
        dense._observe_split(10 * MS, 1 * MS)
    assert _threads._STATE.serial_until - _threads._STATE.serial_since == 500 * MS
    # When the backoff has passed, the team is back.
    _threads._STATE.serial_until = 1
    assert dense.get_team() == 2
    _threads.reset_guard()
    assert dense.get_team() == 2


@needs_two_cores
@pytest.mark.parametrize("region, first", [(2 * MS, 1 * MS),        # waited one slice: normal
                                           (85_000, 40_000),        # under 50 us of waiting
                                           (0, 0)])
def test_guard_ignores_products_that_did_not_wait(region, first, restore_threads):
    fl.backend.set_num_threads(2)
    for _ in range(50):
        dense._observe_split(region, first)
    assert dense.get_team() == 2 and _threads._STATE.slow == 0


@needs_two_cores
def test_guard_needs_a_net_run_of_slow_products(restore_threads):
    fl.backend.set_num_threads(2)
    for _ in range(50):
        dense._observe_split(10 * MS, 1 * MS)
        dense._observe_split(1 * MS, 1 * MS)  # a fast one cancels a slow one
    assert dense.get_team() == 2
    assert _threads._STATE.slow <= 1


# --- 5. fork ---------------------------------------------------------------------------

def test_a_pool_forked_after_training_runs_its_steps():
    out = run_python("""
        import multiprocessing as mp
        import numpy as np, fastlayers as fl
        m = fl.Sequential([fl.layers.Dense(256, activation="relu", input_shape=(784,)),
                           fl.layers.Dense(10)])
        m.compile(optimizer="sgd", loss="mse")
        x = np.ones((256, 784), np.float32); y = np.zeros((256, 10), np.float32)
        for _ in range(3):
            m.train_on_batch(x, y)      # the parent's OpenMP team is running now

        def step(i):
            loss = m.train_on_batch(x + i, y)
            return fl.backend.get_num_threads(), bool(np.isfinite(loss))

        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(step, [0, 1]), fl.backend.get_num_threads() >= 1)
    """, timeout=60)
    assert out == "[(1, True), (1, True)] True"


def test_a_forked_child_stays_single_threaded():
    out = run_python("""
        import os, warnings
        import fastlayers as fl
        fl.backend.set_num_threads(None)
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                fl.backend.set_num_threads(2)
            ok = fl.backend.get_num_threads() == 1 and (len(w) == 1 or
                                                        fl._threads.usable_cores() < 2)
            os._exit(0 if ok else 3)
        print(os.waitpid(pid, 0)[1] >> 8)
    """, timeout=60)
    assert out == "0"


# --- 6. OpenMP's wait policy -----------------------------------------------------------

def test_spin_count_default_is_set_only_for_the_runtime_load(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with _threads.runtime_environment():
        assert os.environ["GOMP_SPINCOUNT"] == _threads.SPINCOUNT_DEFAULT
    assert "GOMP_SPINCOUNT" not in os.environ


@pytest.mark.parametrize("name, value", [("GOMP_SPINCOUNT", "123"),
                                         ("OMP_WAIT_POLICY", "passive")])
def test_the_users_wait_policy_wins(monkeypatch, name, value):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv(name, value)
    with _threads.runtime_environment():
        assert os.environ[name] == value
        assert (name == "GOMP_SPINCOUNT") == ("GOMP_SPINCOUNT" in os.environ)
    assert os.environ[name] == value
