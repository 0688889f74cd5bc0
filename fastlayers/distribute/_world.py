"""The process group: lazy MPI start-up, rank/size, the job-wide failure hooks.

Nothing here imports mpi4py until :func:`init` decides the process was started by
an MPI launcher; a plain ``python script.py`` stays a world of size 1 that never
loads MPI (loading it alone costs about a second as an MPI "singleton").
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

MPI_HINT = 'pip install "fastlayers[mpi]"'

# Set by a launcher in every process it starts: Open MPI/PRRTE, PMIx (srun --mpi=pmix),
# Hydra/PMI (MPICH, Intel MPI), Slurm's PMI2.
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS")
_LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")

DEFAULT_TIMEOUT = 30.0


class _World:
    """What :func:`init` found: the communicator (or None) and this process's place."""

    def __init__(self):
        self.initialized = False
        self.MPI = None          # the mpi4py.MPI module, once imported
        self.comm = None         # a duplicate of COMM_WORLD: our traffic never meets the user's
        self.watch = None        # a second duplicate for the watchdog's point-to-point probes
        self.rank = 0
        self.size = 1
        self.local_rank = 0
        self.local_size = 1
        self.timeout = DEFAULT_TIMEOUT
        self.default_strategy = None
        self._prev_excepthook = None


WORLD = _World()


def launcher_size() -> int:
    """How many processes the launcher says it started: 1 without a launcher, -1 when
    one started this process without saying how many."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return max(1, int(value))
    return -1 if any(os.environ.get(v) for v in _LAUNCHER_RANK_VARS) else 1


def import_mpi(what: str):
    """``mpi4py.MPI``, or an ImportError naming the extra to install."""
    try:
        import mpi4py
    except ImportError as exc:
        raise ImportError(f"{what} needs mpi4py and an MPI library: {MPI_HINT}") from exc
    if "mpi4py.MPI" not in sys.modules:
        # Only the main thread talks to MPI (the kernels' OpenMP threads never do).
        mpi4py.rc.thread_level = "funneled"
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{what}: mpi4py is installed but its MPI library did not load "
                          f"({exc}); {MPI_HINT} installs both") from exc
    return MPI


def _check_timeout(timeout) -> float:
    if timeout is None:
        env = os.environ.get("FASTLAYERS_DISTRIBUTE_TIMEOUT")
        timeout = float(env) if env else DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not float(timeout) > 0:
        raise ValueError(f"fl.distribute.init: timeout must be a positive number of seconds, "
                         f"got {timeout!r}")
    return float(timeout)


def init(timeout: Optional[float] = None, use_mpi: Optional[bool] = None) -> int:
    """Join the job: returns this process's rank (0 when not under an MPI launcher).

    ``use_mpi=None`` (default) starts MPI only when an MPI launcher (``mpirun``,
    ``srun``) started this process and mpi4py is installed; otherwise the process is
    a world of size 1 and nothing is imported.  ``use_mpi=True`` insists on MPI (an
    ImportError naming ``pip install "fastlayers[mpi]"`` without it); ``False`` never
    starts it.  ``timeout`` (seconds, default 30 or ``$FASTLAYERS_DISTRIBUTE_TIMEOUT``)
    bounds every wait on the other ranks: past it the job is aborted, naming the
    ranks that did not answer.

    With more than one rank, ``init`` also makes the random state of every rank that
    of rank 0 (so initial weights, dropout seeds and shuffles agree), makes an
    uncaught exception on any rank abort the whole job, gives each rank its share of
    the machine's cores (unless ``fl.backend.set_num_threads`` was called), and
    installs a :class:`DataParallel` as the default strategy ``fit`` uses
    (:func:`get_strategy`).
    Calling it again only updates ``timeout``.
    """
    w = WORLD
    w.timeout = _check_timeout(timeout if timeout is not None else
                               (w.timeout if w.initialized else None))
    if w.initialized:
        return w.rank
    if use_mpi is None:
        n = launcher_size()
        if n != 1:
            try:
                import mpi4py  # noqa: F401  (only asking whether it is there)
            except ImportError:
                warnings.warn(
                    f"fl.distribute.init: started by an MPI launcher (size {n if n > 0 else '?'}), "
                    f"but mpi4py is not installed, so every process trains alone on all the "
                    f"data; {MPI_HINT}", RuntimeWarning, stacklevel=2)
                use_mpi = False
        use_mpi = use_mpi is not False and n != 1
    if use_mpi:
        _start_mpi(import_mpi("fl.distribute.init"))
    w.initialized = True
    if w.size > 1:
        from .data_parallel import DataParallel
        w.default_strategy = DataParallel()
    return w.rank


def _start_mpi(MPI) -> None:
    w = WORLD
    w.MPI = MPI
    world = MPI.COMM_WORLD
    w.comm = world.Dup()
    w.watch = world.Dup()
    w.rank, w.size = w.comm.Get_rank(), w.comm.Get_size()
    node = w.comm.Split_type(MPI.COMM_TYPE_SHARED, key=w.rank)
    w.local_rank, w.local_size = node.Get_rank(), node.Get_size()
    node.Free()
    if w.size > 1:
        _install_excepthook()
        _share_cores()
        from .collectives import sync_random_state
        sync_random_state()


def _share_cores() -> None:
    """Give each rank its share of the machine's cores, unless the script chose a count.

    The kernels' OpenMP team defaults to every core; N ranks on one machine would run
    N teams on the same cores, and spinning teams that share cores slow each other
    down many times over.  A rank bound to some cores by the launcher (Open MPI binds
    each of 2 ranks to a core) uses those.
    """
    from .. import backend
    if backend._NUM_THREADS is not None:
        return
    total = os.cpu_count() or 1
    try:
        mine = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mine = total
    backend.set_num_threads(mine if mine < total else max(1, total // WORLD.local_size))


def _install_excepthook() -> None:
    """An uncaught exception on one rank aborts every rank, naming the one that raised.

    Without it the other ranks would wait forever (or until the watchdog's timeout) in
    the next collective the dead rank never joins.
    """
    w = WORLD
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        previous(exc_type, exc, tb)
        sys.stderr.write(f"fastlayers.distribute: rank {w.rank} of {w.size} raised an uncaught "
                         f"{exc_type.__name__}; aborting all ranks\n")
        sys.stderr.flush()
        w.MPI.COMM_WORLD.Abort(1)

    w._prev_excepthook = previous
    sys.excepthook = hook


def _reset_for_tests() -> None:
    """Forget :func:`init` (single-process tests only; a started MPI cannot be restarted)."""
    w = WORLD
    if w._prev_excepthook is not None:
        sys.excepthook = w._prev_excepthook
    WORLD.__init__()


def rank() -> int:
    """This process's rank, 0..size-1 (0 without MPI)."""
    return WORLD.rank


def size() -> int:
    """How many processes train together (1 without MPI)."""
    return WORLD.size


def local_rank() -> int:
    """This process's rank among the processes on its machine."""
    return WORLD.local_rank


def local_size() -> int:
    """How many of the job's processes run on this machine."""
    return WORLD.local_size


def is_primary() -> bool:
    """True on rank 0: the process that logs, prints and writes files."""
    return WORLD.rank == 0


def get_strategy():
    """The strategy ``fit`` uses when given none: the :class:`DataParallel` installed by
    :func:`init` in a job of several ranks, else ``None`` (plain single-process fit)."""
    return WORLD.default_strategy


def set_strategy(strategy) -> None:
    """Replace the default strategy (``None``: plain single-process ``fit``)."""
    from .data_parallel import DataParallel
    if strategy is not None and not isinstance(strategy, DataParallel):
        raise TypeError(f"fl.distribute.set_strategy: expected a DataParallel or None, "
                        f"got {type(strategy).__name__}")
    WORLD.default_strategy = strategy


def resolve(distribute=None):
    """What ``fit(distribute=...)`` means: ``None`` → the default strategy, ``False`` →
    none, a :class:`DataParallel` → itself; returns a strategy or ``None``."""
    from .data_parallel import DataParallel
    if distribute is None:
        return WORLD.default_strategy
    if distribute is False:
        return None
    if isinstance(distribute, DataParallel):
        return distribute
    raise TypeError(f"distribute must be a fl.distribute.DataParallel, None or False, "
                    f"got {type(distribute).__name__}")
