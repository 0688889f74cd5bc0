"""The collective calls of ``fl.distribute``: all-reduce, barrier, weight broadcast.

Each is a no-op (or a copy) in a world of size 1, and every multi-rank exchange is
waited for under the watchdog (:mod:`._wait`), so a dead peer ends the job instead
of hanging it.
"""
from __future__ import annotations

import pickle
import random as _pyrandom
import zlib
from typing import List, Sequence

import numpy as np

from ._wait import wait
from ._world import WORLD

OPS = ("mean", "sum", "min", "max")


def _check_op(op: str, owner: str) -> str:
    if op not in OPS:
        raise ValueError(f"{owner}: op must be one of {', '.join(map(repr, OPS))}, got {op!r}")
    return op


def mpi_op(op: str):
    """The MPI reduction for ``op`` (a mean is a sum divided afterwards)."""
    MPI = WORLD.MPI
    return {"mean": MPI.SUM, "sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op]


def allreduce(array, op: str = "mean"):
    """``op`` ("mean", "sum", "min", "max") of ``array`` over all ranks, on every rank.

    Returns a new array of the same shape (a NumPy scalar for a scalar input); the
    input is not modified.  Float dtypes keep their dtype; a mean of integers or
    booleans is float64, a sum of booleans int64.
    """
    _check_op(op, "fl.distribute.allreduce")
    a = np.asarray(array)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"fl.distribute.allreduce: expected a numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "b" or (op == "mean" and a.dtype.kind in "iu"):
        dtype = np.float64 if op == "mean" else np.int64
    else:
        dtype = a.dtype
    out = np.array(a, dtype=dtype, order="C", copy=True)
    if WORLD.size > 1 and out.size:
        flat = out.reshape(-1)
        wait([WORLD.comm.Iallreduce(WORLD.MPI.IN_PLACE, flat, op=mpi_op(op))],
             f"fl.distribute.allreduce(op={op!r})")
        if op == "mean":
            flat /= WORLD.size
    return out[()] if out.ndim == 0 else out


def barrier() -> None:
    """Wait until every rank has reached this call."""
    if WORLD.size > 1:
        wait([WORLD.comm.Ibarrier()], "fl.distribute.barrier()")


def _weight_arrays(model, owner: str) -> List[np.ndarray]:
    weights = model.weights if hasattr(model, "weights") else model
    arrays = [w.value if hasattr(w, "value") else w for w in weights]
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{owner}: weight {i} is a {type(a).__name__}, not a NumPy array")
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"{owner}: weight {i} must be a writable C-contiguous array "
                             f"to be received in place")
    return arrays


def _layout_crc(arrays: Sequence[np.ndarray]) -> int:
    return zlib.crc32(repr([(a.shape, a.dtype.str) for a in arrays]).encode())


def _gather_int(value: int, what: str) -> np.ndarray:
    """Every rank's ``value`` (a 64-bit integer), in rank order."""
    mine = np.array([value], dtype=np.int64)
    everyone = np.empty(WORLD.size, dtype=np.int64)
    wait([WORLD.comm.Iallgather(mine, everyone)], what)
    return everyone


def broadcast_weights(model, root: int = 0) -> int:
    """Copy rank ``root``'s weights into every rank's model, in place.

    ``model`` is a model/layer (all of its ``weights``, trainable or not) or a list of
    weights/arrays in the same order on every rank.  The arrays are written into, never
    replaced, so kernels and optimizers holding them see the new values.  Every rank
    must pass the same layout (shapes and dtypes), else a ValueError on every rank.
    Returns the bytes broadcast (0 in a world of size 1).
    """
    owner = "fl.distribute.broadcast_weights"
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or \
            not 0 <= root < WORLD.size:
        raise ValueError(f"{owner}: root must be a rank in 0..{WORLD.size - 1}, got {root!r}")
    arrays = _weight_arrays(model, owner)
    if WORLD.size == 1:
        return 0
    layouts = _gather_int(_layout_crc(arrays), f"{owner} (layout check)")
    differ = [r for r in range(WORLD.size) if layouts[r] != layouts[root]]
    if differ:
        raise ValueError(f"{owner}: the weights of rank(s) {differ} differ in shapes or dtypes "
                         f"from those of rank {root}: every rank must build the same model")
    comm = WORLD.comm
    wait([comm.Ibcast(a.reshape(-1), root=int(root)) for a in arrays if a.size], owner)
    return int(sum(a.nbytes for a in arrays))


def weights_in_sync(model) -> bool:
    """True on every rank when every rank's weights are bit-identical (a checksum test)."""
    arrays = _weight_arrays(model, "fl.distribute.weights_in_sync")
    if WORLD.size == 1:
        return True
    crc = 0
    for a in arrays:
        crc = zlib.crc32(a.reshape(-1).view(np.uint8) if a.size else b"", crc)
    crc = zlib.crc32(repr([(a.shape, a.dtype.str) for a in arrays]).encode(), crc)
    crcs = _gather_int(crc, "fl.distribute.weights_in_sync")
    return bool((crcs == crcs[0]).all())


def broadcast_bytes(data: bytes, root: int = 0) -> bytes:
    """Rank ``root``'s ``data`` on every rank (other ranks' ``data`` is ignored)."""
    comm = WORLD.comm
    n = np.array([len(data) if WORLD.rank == root else 0], dtype=np.int64)
    wait([comm.Ibcast(n, root=root)], "fl.distribute (broadcast length)")
    buf = np.frombuffer(bytearray(data), dtype=np.uint8) if WORLD.rank == root else \
        np.empty(int(n[0]), dtype=np.uint8)
    if buf.size:
        wait([comm.Ibcast(buf, root=root)], "fl.distribute (broadcast)")
    return buf.tobytes()


def sync_random_state(root: int = 0) -> None:
    """Give every rank the random state of rank ``root``: fastlayers' generator, NumPy's
    global one and Python's ``random``, so the same calls draw the same numbers."""
    from ..utils import random as flrandom
    state = pickle.dumps((flrandom._GENERATOR.bit_generator.state, np.random.get_state(),
                          _pyrandom.getstate()))
    fl_state, np_state, py_state = pickle.loads(broadcast_bytes(state, root))
    flrandom._GENERATOR.bit_generator.state = fl_state
    np.random.set_state(np_state)
    _pyrandom.setstate(py_state)
