"""fl.distribute: data-parallel training over MPI (mpi4py + Open MPI).

The same script runs as one process or under ``mpirun -n N``::

    import fastlayers as fl
    fl.distribute.init()              # size 1 unless started by mpirun/srun
    model.fit(x, y, batch_size=256)   # 256 is the global batch, split over the ranks

Without mpi4py, or outside an MPI launcher, the world has size 1: every call here
is a no-op or a copy, and MPI is never imported (``import fastlayers`` never does).
``pip install "fastlayers[mpi]"`` installs mpi4py and Open MPI.
"""
from ._world import (MPI_HINT, get_strategy, init, is_primary, local_rank, local_size, rank,
                     resolve, set_strategy, size)
from .collectives import allreduce, barrier, broadcast_weights, weights_in_sync
from .data_parallel import DataParallel

__all__ = ["init", "rank", "size", "local_rank", "local_size", "is_primary", "barrier",
           "allreduce", "broadcast_weights", "weights_in_sync", "DataParallel",
           "get_strategy", "set_strategy", "resolve", "MPI_HINT"]
