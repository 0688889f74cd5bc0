"""DataParallel: the strategy ``fit`` and the compiled step call to train over ranks.

Horovod's recipe: every rank holds the whole model, takes its contiguous shard of
each global batch, computes the gradients of that shard, and the gradients of the
compiled trainable set (frozen weights are never in the list, so never sent) are
averaged by ring all-reduce before the optimizer moves anything.

The calls ``fit`` and the compiled step make::

    strategy.begin_fit(model)                       # once: rank 0's weights and seed
    # per training step:
    local = strategy.shard(global_batch_indices)   # fit: this rank's rows
    # ... forward/backward on x[local]; the dropout counter starts at
    #     strategy.row_offset (the shard's position in the global batch) ...
    strategy.reduce_gradients(grads)                # average in place, blocking
    # or, overlapped with the backward pass:
    strategy.begin_step(grads)
    strategy.grad_ready(i)    # as soon as grads[i] is final (any order)
    strategy.wait_all()       # before the first weight moves
    loss_sum, count = strategy.reduce_scalars(np.array([loss_sum, count]))

Gradients are packed into a few contiguous buckets (at most ``bucket_bytes`` each,
one dtype each), and each bucket's ``Iallreduce`` starts as soon as all its gradients
are ready.  Buckets are filled from the *end* of the list, the gradients a backward
pass finishes first, and always start in bucket order on every rank (MPI requires
non-blocking collectives to be started in the same order everywhere).
"""
from __future__ import annotations

import time
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import _world
from ._wait import wait
from ._world import WORLD
from .collectives import _check_op, _gather_int, broadcast_weights, mpi_op, sync_random_state

DEFAULT_BUCKET_BYTES = 25 * 2 ** 20


class _Bucket:
    __slots__ = ("indices", "buffer", "views", "request", "ready", "started")

    def __init__(self, indices: List[int], grads: Sequence[np.ndarray]):
        self.indices = indices
        dtype = grads[indices[0]].dtype
        self.buffer = np.empty(sum(grads[i].size for i in indices), dtype=dtype)
        self.views = []
        at = 0
        for i in indices:
            g = grads[i]
            self.views.append(self.buffer[at:at + g.size].reshape(g.shape))
            at += g.size
        self.request = None
        self.ready = 0
        self.started = False


class DataParallel:
    """Data-parallel training over MPI: ``model.fit(..., distribute=DataParallel())``.

    ``bucket_bytes`` caps one gradient bucket (default 25 MiB, as PyTorch's DDP);
    ``timeout`` (seconds) bounds every wait on the other ranks (default: the one given
    to :func:`fl.distribute.init`).  Starts MPI through :func:`fl.distribute.init`
    if that was not called; in a world of size 1 every call is a cheap no-op.
    Needs mpi4py (``pip install "fastlayers[mpi]"``).
    """

    def __init__(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES, timeout: Optional[float] = None):
        try:
            import mpi4py  # noqa: F401
        except ImportError as exc:
            raise ImportError("fl.distribute.DataParallel needs mpi4py and an MPI library: "
                              f"{_world.MPI_HINT}") from exc
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
                or bucket_bytes < 1:
            raise ValueError(f"DataParallel: bucket_bytes must be a positive integer, "
                             f"got {bucket_bytes!r}")
        if not WORLD.initialized or timeout is not None:
            _world.init(timeout=timeout)
        self.bucket_bytes = int(bucket_bytes)
        self._signature = None
        self._plans: Dict[tuple, tuple] = {}
        self._buckets: List[_Bucket] = []
        self._bucket_of: List[int] = []
        self._bucket_indices: List[List[int]] = []
        self._grads: Optional[List[np.ndarray]] = None
        self._next_start = 0
        self._in_step = False
        self._scale = 1.0 / WORLD.size
        self.row_offset = 0
        self.local_rows = 0
        self.global_rows = 0
        self.reset_stats()

    # ------------------------------------------------------------------ the world
    @property
    def rank(self) -> int:
        return WORLD.rank

    @property
    def size(self) -> int:
        return WORLD.size

    @property
    def is_primary(self) -> bool:
        """True on rank 0, which alone prints, logs and writes files."""
        return WORLD.rank == 0

    # ------------------------------------------------------------------ data
    def shard(self, global_batch_indices) -> np.ndarray:
        """This rank's contiguous part of one global batch's row indices.

        Rank ``r`` of ``N`` gets ``indices[n*r//N : n*(r+1)//N]`` (sizes differ by at
        most one).  Also sets, until the next call, ``row_offset`` (where the shard
        starts in the global batch: the dropout counter's offset, so masks match a
        single-process run on the global batch), ``local_rows``, ``global_rows``, and
        the weight ``local_rows / global_rows`` by which :meth:`reduce_gradients` turns
        every rank's local-mean gradient into the global-batch mean exactly.

        For a counter-based dropout mask (Dropout's counter advances by the elements it
        draws): the shard's mask starts at the step's counter + ``row_offset`` × the
        elements per row, and every rank advances the counter by ``global_rows`` × the
        elements per row, as a single process running the global batch would.
        """
        idx = np.asarray(global_batch_indices)
        if idx.ndim != 1:
            raise ValueError(f"DataParallel.shard: expected a 1-D array of row indices, "
                             f"got shape {idx.shape}")
        n, r, size = len(idx), WORLD.rank, WORLD.size
        lo, hi = n * r // size, n * (r + 1) // size
        self.row_offset, self.local_rows, self.global_rows = lo, hi - lo, n
        self._scale = (hi - lo) / n if n else 0.0
        return idx[lo:hi]

    # ------------------------------------------------------------------ gradients
    def reduce_gradients(self, grads: List[np.ndarray]) -> None:
        """Average ``grads`` across ranks in place (blocking).

        ``grads``: the gradients of the compiled trainable set only, in the same order
        on every rank, each the gradient of this rank's *mean* loss over its shard.
        Afterwards every rank holds the gradient of the mean over the global batch
        (weighted by shard sizes, see :meth:`shard`).  A rank whose shard is empty must
        still call it: its gradients are taken as zero.
        """
        self.begin_step(grads)
        self.wait_all()

    def begin_step(self, grads: List[np.ndarray]) -> None:
        """Bind this step's gradient arrays (for :meth:`grad_ready`/:meth:`wait_all`)."""
        if self._in_step:
            raise RuntimeError("DataParallel.begin_step: the previous step's gradients were "
                               "never waited for (call wait_all() first)")
        grads = list(grads)
        for i, g in enumerate(grads):
            if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
                raise TypeError(f"DataParallel: gradient {i} must be a float NumPy array, got "
                                f"{getattr(g, 'dtype', type(g).__name__)}")
            if not g.flags.writeable:
                raise ValueError(f"DataParallel: gradient {i} is read-only; the average is "
                                 f"written into it in place")
        signature = tuple((g.shape, g.dtype.str) for g in grads)
        if signature != self._signature:
            self._use_plan(signature, grads)
        self._grads = grads
        for b in self._buckets:
            b.ready, b.started, b.request = 0, False, None
        self._next_start = 0
        self._in_step = WORLD.size > 1

    def _use_plan(self, signature, grads) -> None:
        """Switch to the buckets of this gradient layout, planned once per layout: models
        trained in alternation (a GAN's two) share the default strategy."""
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plans[signature] = self._plan(signature, grads)
        self._buckets, self._bucket_indices, self._bucket_of = plan
        self._signature = signature
        self._stats["buckets"] = len(self._bucket_indices)

    def _plan(self, signature, grads):
        """Cut the gradients into buckets, from the last one backwards."""
        if WORLD.size > 1:
            crc = zlib.crc32(repr(signature).encode())
            crcs = _gather_int(crc, "DataParallel (gradient layout check)")
            differ = [r for r in range(WORLD.size) if crcs[r] != crcs[0]]
            if differ:
                raise ValueError(f"DataParallel.reduce_gradients: rank(s) {differ} pass "
                                 f"gradients of other shapes/dtypes/order than rank 0: every "
                                 f"rank must compile the same model")
        buckets, current, nbytes = [], [], 0
        for i in reversed(range(len(grads))):
            g = grads[i]
            if current and (g.dtype != grads[current[0]].dtype or
                            nbytes + g.nbytes > self.bucket_bytes):
                buckets.append(current)
                current, nbytes = [], 0
            current.append(i)
            nbytes += g.nbytes
        if current:
            buckets.append(current)
        # A world of size 1 exchanges nothing, so it allocates no buffers either.
        objects = [_Bucket(ix, grads) for ix in buckets] if WORLD.size > 1 else []
        bucket_of = [0] * len(grads)
        for b, ix in enumerate(buckets):
            for i in ix:
                bucket_of[i] = b
        return objects, buckets, bucket_of

    @property
    def buckets(self) -> List[List[int]]:
        """The gradient indices in each bucket, in the order the buckets start."""
        return [list(ix) for ix in self._bucket_indices]

    def bucket_of(self, i: int) -> int:
        """The bucket holding gradient ``i`` (after the first :meth:`begin_step`)."""
        return self._bucket_of[i]

    def grad_ready(self, i: int) -> None:
        """Gradient ``i`` is final: start its bucket's all-reduce once the bucket is full."""
        if not self._in_step:
            return
        b = self._buckets[self._bucket_of[i]]
        b.ready += 1
        self._start_ready()

    def start_bucket(self, b: int) -> None:
        """Bucket ``b``'s gradients are all final: start its all-reduce (after those of
        the buckets before it, which start first on every rank)."""
        if not self._in_step:
            return
        bucket = self._buckets[b]
        bucket.ready = len(bucket.indices)
        self._start_ready()

    def _start_ready(self) -> None:
        buckets = self._buckets
        while self._next_start < len(buckets) and \
                buckets[self._next_start].ready >= len(buckets[self._next_start].indices):
            self._start(buckets[self._next_start])
            self._next_start += 1
        self.poll()

    def _start(self, b: _Bucket) -> None:
        scale = self._scale
        for i, view in zip(b.indices, b.views):
            if scale == 0.0:
                view.fill(0)  # an empty shard's gradient may be NaN (mean over no rows)
            else:
                np.multiply(self._grads[i], scale, out=view, casting="unsafe")
        b.request = WORLD.comm.Iallreduce(WORLD.MPI.IN_PLACE, b.buffer, op=WORLD.MPI.SUM)
        b.started = True
        self._stats["bytes_sent"] += b.buffer.nbytes
        self._stats["allreduce_calls"] += 1

    def poll(self) -> None:
        """Let MPI advance the buckets in flight (Open MPI moves a non-blocking
        collective only inside MPI calls; the engine may call this between layers)."""
        if self._in_step:
            reqs = [b.request for b in self._buckets if b.request is not None]
            if reqs:
                WORLD.MPI.Request.Testall(reqs)

    def wait_all(self) -> None:
        """Start the buckets not yet started, wait for all, write the averages back
        into the gradient arrays.  Call before the optimizer moves any weight."""
        if not self._in_step:
            return
        for b in self._buckets[self._next_start:]:
            self._start(b)
        self._next_start = len(self._buckets)
        waited = wait([b.request for b in self._buckets], "DataParallel.reduce_gradients")
        for b in self._buckets:
            for i, view in zip(b.indices, b.views):
                np.copyto(self._grads[i], view)
            b.request = None
        self._grads = None
        self._in_step = False
        s = self._stats
        s["wait_seconds"] += waited
        s["steps"] += 1
        s["bytes_last_step"] = sum(b.buffer.nbytes for b in self._buckets)

    # ------------------------------------------------------------------ scalars, weights
    def reduce_scalars(self, values, op: str = "sum") -> np.ndarray:
        """Loss/metric accumulators summed (or ``op``) over ranks: a new float64 array."""
        _check_op(op, "DataParallel.reduce_scalars")
        out = np.array(values, dtype=np.float64, copy=True, order="C")
        if WORLD.size > 1 and out.size:
            flat = out.reshape(-1)
            start = time.perf_counter()
            wait([WORLD.comm.Iallreduce(WORLD.MPI.IN_PLACE, flat, op=mpi_op(op))],
                 "DataParallel.reduce_scalars")
            self._stats["scalar_wait_seconds"] += time.perf_counter() - start
            self._stats["scalar_bytes"] += flat.nbytes
            if op == "mean":
                flat /= WORLD.size
        return out

    def begin_fit(self, model) -> None:
        """What ``fit`` calls once before its first epoch: rank 0's weights into every
        rank (a model restored from a checkpoint on rank 0 alone, or built before
        :func:`fl.distribute.init`) and rank 0's random state into every rank, so
        every epoch's shuffled order and every dropout seed agree."""
        if WORLD.size > 1:
            self.broadcast_weights(model, root=0)
            sync_random_state(root=0)

    def broadcast_weights(self, model, root: int = 0) -> None:
        """:func:`fl.distribute.broadcast_weights`, counted in :attr:`stats`."""
        self._stats["broadcast_bytes"] += broadcast_weights(model, root)

    def allgather_rows(self, array) -> np.ndarray:
        """Every rank's ``array`` concatenated along axis 0 in rank order (for predict and
        evaluate over contiguous shards); the other axes must match on every rank."""
        a = np.ascontiguousarray(array)
        if WORLD.size == 1:
            return a.copy()
        if a.ndim == 0:
            raise ValueError("DataParallel.allgather_rows: expected an array with a row axis")
        rows = _gather_int(a.shape[0], "DataParallel.allgather_rows (row counts)")
        row_items = int(np.prod(a.shape[1:], dtype=np.int64))
        tails = _gather_int(zlib.crc32(repr((a.shape[1:], a.dtype.str)).encode()),
                            "DataParallel.allgather_rows (shape check)")
        if (tails != tails[0]).any():
            raise ValueError("DataParallel.allgather_rows: ranks pass arrays whose trailing "
                             "shape or dtype differ")
        out = np.empty((int(rows.sum()),) + a.shape[1:], dtype=a.dtype)
        counts = rows * row_items
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        wait([WORLD.comm.Iallgatherv(a.reshape(-1),
                                     [out.reshape(-1), (counts.tolist(), displs.tolist())])],
             "DataParallel.allgather_rows")
        return out

    # ------------------------------------------------------------------ counters
    @property
    def stats(self) -> Dict[str, float]:
        """Counters since construction or :meth:`reset_stats`.

        ``bytes_sent``: gradient bytes this rank handed to all-reduce (the payload; a
        ring all-reduce puts 2·(N−1)/N times that on each rank's link, reported as
        ``ring_bytes_sent``); ``bytes_last_step``; ``steps``; ``allreduce_calls``;
        ``buckets``; ``wait_seconds``: time blocked in :meth:`wait_all` (the exchange
        not hidden behind computation); ``scalar_bytes``, ``scalar_wait_seconds``;
        ``broadcast_bytes``.
        """
        s = dict(self._stats)
        n = WORLD.size
        s["ring_bytes_sent"] = s["bytes_sent"] * 2 * (n - 1) / n
        return s

    @property
    def bytes_sent(self) -> int:
        """Gradient payload bytes handed to all-reduce so far (see :attr:`stats`)."""
        return self._stats["bytes_sent"]

    def reset_stats(self) -> None:
        buckets = len(self._bucket_indices) if hasattr(self, "_bucket_indices") else 0
        self._stats = {"bytes_sent": 0, "bytes_last_step": 0, "steps": 0, "allreduce_calls": 0,
                       "buckets": buckets, "wait_seconds": 0.0, "scalar_bytes": 0,
                       "scalar_wait_seconds": 0.0, "broadcast_bytes": 0}

    def __repr__(self) -> str:
        return (f"<DataParallel rank={WORLD.rank} size={WORLD.size} "
                f"bucket_bytes={self.bucket_bytes}>")
