"""The one team size of fastlayers' kernels, and the runtimes it has to keep in line.

The kernels split large matrix products over an OpenMP team (one single-threaded
BLAS call per slice) and run big elementwise loops on the same team.  This module
owns the process-wide record they read (``csrc/_team.pxd``):

- ``team``: threads per parallel loop.  Default: ``OMP_NUM_THREADS`` if set, capped
  at the CPUs this process may run on (its affinity mask, so ``taskset -c 0``
  means one thread).  OpenMP's own setting is per calling thread, which is why the
  kernels read this record and pass the team size to every parallel loop.
- ``omp_default``: what ``omp_get_max_threads()`` answers in a fresh thread.  A
  lower answer in the calling thread is a limit set by threadpoolctl (or
  ``omp_set_num_threads``; also ``torch.set_num_threads`` when torch shares this
  OpenMP runtime) and lowers the team for calls from that thread.
- the starvation guard: each split product times itself, and when the team
  keeps waiting for a thread that another process has pushed off its core, the
  kernels run single-threaded for a backoff (0.25 s, doubling up to 8 s while
  it keeps happening) before trying the team again.  On a 2-core machine with
  one core busy a 1.3 ms step otherwise took 60 ms.
- the get/set thread-count functions of scipy's OpenBLAS, the BLAS the kernels
  call: every product resets it to one thread if someone (threadpoolctl) raised
  it, since a threaded BLAS inside each slice of the split was 70x slower.
  NumPy's own BLAS is never touched.

A process forked after the parent ran a parallel loop cannot start an OpenMP team
(libgomp's thread pool does not survive ``fork``), so a forked child runs
single-threaded, as PyTorch's does.

Import this module first: it is stdlib-only so that the kernel modules can bind
to it while ``fastlayers`` is still importing.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
import warnings
from typing import Callable, Iterator, Optional

# libgomp's default spin (GOMP_SPINCOUNT=300000, about 3 ms) keeps idle team
# threads busy between parallel loops.  On a machine whose cores are shared,
# a spinning thread uses up its share and the next loop then waits for it to
# be scheduled again (a 1.3 ms step took 60 ms with one core busy).  This count
# is long enough to bridge the gaps inside a step, short enough to sleep
# between steps; measured in the threads branch's report.
SPINCOUNT_DEFAULT = "10000"


class _TeamState(ctypes.Structure):
    # Must match fl_team_state in csrc/_team.pxd field for field.
    _fields_ = [("team", ctypes.c_int), ("omp_default", ctypes.c_int),
                ("blas_get", ctypes.c_void_p), ("blas_set", ctypes.c_void_p),
                ("slow", ctypes.c_int), ("level", ctypes.c_int),
                ("serial_until", ctypes.c_int64), ("serial_since", ctypes.c_int64)]


_STATE = _TeamState(1, 0, None, None, 0, 0, 0, 0)
_LOCK = threading.Lock()
_BOUND = False
_FORKED = False
_BLAS_SET: Optional[Callable[[int], None]] = None


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, else the core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _omp_num_threads_env() -> Optional[int]:
    # OpenMP's syntax is a list per nesting level ("4,2"): the first counts here.
    # A value OpenMP would reject is ignored, as OpenMP itself does.
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 1 else None


def default_team() -> int:
    """The team without set_num_threads: OMP_NUM_THREADS, capped at the usable cores."""
    cores = usable_cores()
    requested = _omp_num_threads_env()
    return cores if requested is None else min(requested, cores)


def team() -> int:
    """The process-wide team size the kernels run with."""
    return _STATE.team


def apply(n: Optional[int]) -> int:
    """Set the team to ``n`` threads (None: :func:`default_team`), capped; returns it.

    ``n`` is a validated positive int.  More threads than usable cores only wait
    on each other, so the team is capped at :func:`usable_cores`; a forked child
    stays at one thread.
    """
    team_size = default_team() if n is None else min(n, usable_cores())
    if _FORKED and team_size > 1:
        warnings.warn("fastlayers: this process was forked from one that may have used an "
                      "OpenMP team, which cannot be restarted after fork; the kernels stay "
                      "single-threaded", RuntimeWarning, stacklevel=3)
        team_size = 1
    _STATE.team = team_size
    if _BLAS_SET is not None:
        _BLAS_SET(1)
    return team_size


def state_address(omp_max_threads: Callable[[], int]) -> int:
    """Address of the team record, for a kernel module's ``_team.pxi`` to bind to.

    The first call also reads the OpenMP default from a fresh thread (the
    calling thread's value may already be lowered by threadpoolctl) and finds
    scipy's OpenBLAS thread functions.
    """
    global _BOUND
    with _LOCK:
        if not _BOUND:
            answer = []
            probe = threading.Thread(target=lambda: answer.append(omp_max_threads()))
            probe.start()
            probe.join()
            _STATE.omp_default = answer[0] if answer else 1
            _bind_blas()
            _BOUND = True
    return ctypes.addressof(_STATE)


def _openblas_libraries() -> Iterator[ctypes.CDLL]:
    # scipy's wheels bundle their own OpenBLAS (the kernels call it through
    # scipy.linalg.cython_blas); NumPy's, in numpy.libs, is a different library.
    import scipy

    libdir = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so*"))):
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def _bind_blas() -> None:
    global _BLAS_SET
    for lib in _openblas_libraries():
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is None or set_ is None:
                    continue
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                _STATE.blas_get = ctypes.cast(get, ctypes.c_void_p).value
                _STATE.blas_set = ctypes.cast(set_, ctypes.c_void_p).value
                _BLAS_SET = set_
                set_(1)
                return
    # Another BLAS (a conda or system scipy): left to its own threading.


def reset_guard() -> None:
    """Forget the starvation guard's observations and end any backoff (test hook)."""
    _STATE.slow = _STATE.level = 0
    _STATE.serial_until = _STATE.serial_since = 0


def blas_threads() -> Optional[int]:
    """scipy's OpenBLAS thread count now, or None if it was not found (test hook)."""
    if not _STATE.blas_get:
        return None
    return ctypes.CFUNCTYPE(ctypes.c_int)(_STATE.blas_get)()


@contextlib.contextmanager
def runtime_environment() -> Iterator[None]:
    """Around the first kernel import: OpenMP's wait policy for a shared machine.

    libgomp reads its environment once, when it is loaded, so the default spin
    count is put in the environment for the import and taken out again (child
    processes are not affected).  A user's GOMP_SPINCOUNT or OMP_WAIT_POLICY
    wins; if libgomp was loaded earlier (by a library sharing its file name)
    this is too late and changes nothing.
    """
    added = "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
    if added:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT_DEFAULT
    try:
        yield
    finally:
        if added:
            os.environ.pop("GOMP_SPINCOUNT", None)


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True
    _STATE.team = 1
    reset_guard()


_STATE.team = default_team()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
