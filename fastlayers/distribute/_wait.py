"""Waiting on the other ranks with a deadline, so that no collective hangs forever.

Every exchange in ``fl.distribute`` is non-blocking and waited for here: polled
until done or until the world's timeout.  Past the timeout the waiting rank asks
every other rank, point to point on a separate communicator, whether it is alive
(a rank that is itself waiting answers such probes), then aborts the whole job with
a message naming the ranks that stayed silent.  A rank that is *killed* is caught
sooner by ``mpirun`` itself, which ends the job and names it; this covers the ranks
that hang, stop, or leave early.
"""
from __future__ import annotations

import sys
import time
from typing import List

import numpy as np

from ._world import WORLD

_PING, _PONG = 7101, 7102
# How long the silent ranks get to answer once the timeout has passed.
GRACE_SECONDS = 5.0  # or the timeout itself, when shorter
# Poll without pausing for this long (what MPI_Wait itself does): exchanges of a
# training step finish within it, and any sleep would add its latency to every step.
# Past it, the wait is a rank lagging behind (e.g. rank 0 writing a checkpoint):
# poll with pauses of up to 1 ms so the waiting rank leaves the cores to others.
_SPIN_SECONDS = 10e-3

_me = np.zeros(1, dtype=np.int64)
_pending_answers: List = []


def wait(requests: list, what: str) -> float:
    """Wait for ``requests`` (a list of MPI requests); returns the seconds spent waiting.

    ``what`` names the call for the error message if the other ranks never answer.
    """
    MPI = WORLD.MPI
    start = time.perf_counter()
    if MPI.Request.Testall(requests):
        return time.perf_counter() - start
    deadline = start + WORLD.timeout
    spin_until = start + _SPIN_SECONDS
    while time.perf_counter() < spin_until:
        if MPI.Request.Testall(requests):
            return time.perf_counter() - start
    pause = 20e-6
    while not MPI.Request.Testall(requests):
        answer_probes()
        if time.perf_counter() > deadline:
            _give_up(what, time.perf_counter() - start)
        time.sleep(pause)
        pause = min(1e-3, pause * 2)
    return time.perf_counter() - start


def answer_probes() -> None:
    """Tell every rank that asked (it has timed out waiting) that this rank is alive."""
    MPI, watch = WORLD.MPI, WORLD.watch
    status = MPI.Status()
    while watch.Iprobe(source=MPI.ANY_SOURCE, tag=_PING, status=status):
        src = status.Get_source()
        watch.Recv(np.empty(1, dtype=np.int64), source=src, tag=_PING)
        _me[0] = WORLD.rank
        _pending_answers.append(watch.Isend(_me, dest=src, tag=_PONG))
    if _pending_answers and MPI.Request.Testall(_pending_answers):
        _pending_answers.clear()


def _give_up(what: str, waited: float) -> None:
    w = WORLD
    others = [r for r in range(w.size) if r != w.rank]
    replies = [np.empty(1, dtype=np.int64) for _ in others]
    recvs = [w.watch.Irecv(buf, source=r, tag=_PONG) for buf, r in zip(replies, others)]
    _me[0] = w.rank
    sends = [w.watch.Isend(_me, dest=r, tag=_PING) for r in others]
    answered = [False] * len(others)
    grace = min(GRACE_SECONDS, w.timeout)
    end = time.perf_counter() + grace
    while not all(answered) and time.perf_counter() < end:
        answer_probes()
        for i, req in enumerate(recvs):
            if not answered[i]:
                answered[i] = bool(req.Test())
        time.sleep(1e-3)
    silent = [r for r, ok in zip(others, answered) if not ok]
    del sends  # abandoned: the job ends below
    if silent:
        who = (f"rank {silent[0]}" if len(silent) == 1 else
               "ranks " + ", ".join(map(str, silent)))
        cause = (f"{who} did not answer within {grace:.0f} s more "
                 f"(dead, hung, or finished without making this call)")
    else:
        cause = ("every other rank is alive but waiting in a different call: the ranks' "
                 "programs diverged (e.g. a call made on one rank only)")
    abort(f"fastlayers.distribute: rank {w.rank} of {w.size} waited {waited:.1f} s for the "
          f"other ranks in {what}; {cause}. Aborting the job. If a rank legitimately takes "
          f"longer between exchanges (rank 0 writing a large checkpoint), raise the limit "
          f"with fl.distribute.init(timeout=...) or FASTLAYERS_DISTRIBUTE_TIMEOUT.")


def abort(message: str) -> None:
    """Print ``message`` and end every rank of the job (mpirun exits non-zero)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    WORLD.MPI.COMM_WORLD.Abort(1)
