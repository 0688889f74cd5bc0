"""python -m bench --distributed: one process × 2 threads against 2 ranks × 1 thread.

The parent (:func:`main`) starts two jobs on this machine and prints what each
measured: ``python -m bench.distributed --worker`` alone (2 threads), then the
same under ``mpirun -n 2`` (1 thread each).  A worker fits the ``mlp``
(784-256-256-10, SGD) on synthetic data with global batch 256: one untimed
epoch (binding, the first exchange), then ``--epochs`` timed epochs between
barriers.  Reported: samples/s of ``fit``, and from ``strategy.stats`` the
gradient bytes all-reduced per step and the seconds per step spent waiting on
the exchange (not hidden behind computation).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

LAYERS = (256, 256, 10)


def worker(opts) -> None:
    """One rank of the job (or the single process): fit, time, print one JSON line."""
    import numpy as np

    import fastlayers as fl

    fl.backend.set_num_threads(opts.threads)
    fl.distribute.init()
    fl.backend.set_floatx("float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((opts.rows, 784)).astype(np.float32)
    y = rng.integers(0, 10, opts.rows)
    fl.utils.set_random_seed(1)
    inp = fl.Input((784,))
    h = inp
    for units in LAYERS[:-1]:
        h = fl.layers.Dense(units, activation="relu")(h)
    model = fl.Model(inp, fl.layers.Dense(LAYERS[-1])(h))
    model.compile(fl.optimizers.SGD(0.01),
                  fl.losses.SparseCategoricalCrossentropy(from_logits=True))
    strategy = fl.distribute.get_strategy()
    model.fit(x, y, batch_size=opts.batch, epochs=1, verbose=0)  # warm-up
    if strategy is not None:
        strategy.reset_stats()
    fl.distribute.barrier()
    start = time.perf_counter()
    model.fit(x, y, batch_size=opts.batch, epochs=opts.epochs, verbose=0)
    fl.distribute.barrier()
    seconds = time.perf_counter() - start
    stats = strategy.stats if strategy is not None and strategy.size > 1 else {}
    steps = stats.get("steps", 0)
    if fl.distribute.is_primary():
        print(json.dumps({
            "ranks": fl.distribute.size(), "threads": fl.backend.get_num_threads(),
            "samples_per_s": opts.rows * opts.epochs / seconds, "seconds": seconds,
            "steps": steps, "bytes_per_step": stats.get("bytes_last_step", 0),
            "ring_bytes_per_step": stats.get("ring_bytes_sent", 0) / steps if steps else 0,
            "wait_ms_per_step": 1e3 * stats.get("wait_seconds", 0.0) / steps if steps else 0,
        }), flush=True)


def _mpirun() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = here if os.path.exists(here) else shutil.which("mpirun")
    if not found:
        raise SystemExit("python -m bench --distributed needs mpirun: "
                         "pip install \"fastlayers[mpi]\" (mpi4py + Open MPI)")
    return found


def _run(cmd, env) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench --distributed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    p.add_argument("--rows", type=int, default=60000, help="synthetic samples (default 60000)")
    p.add_argument("--batch", type=int, default=256, help="global batch (default 256)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "out"), help="output directory")
    opts = p.parse_args(argv)
    if opts.worker:
        worker(opts)
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # The workers import the fastlayers this process imports (installed or in-place
    # build), and the bench from this checkout.
    import fastlayers

    lib = os.path.dirname(os.path.dirname(os.path.abspath(fastlayers.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([lib, root] + [v for v in [env.get("PYTHONPATH")] if v])
    args = ["--epochs", str(opts.epochs), "--rows", str(opts.rows), "--batch", str(opts.batch)]
    worker_cmd = [sys.executable, "-m", "bench.distributed", "--worker"] + args
    # Open MPI refuses root unless told, and on one machine loopback is the link.
    mpi_env = dict(env, OMP_NUM_THREADS="1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        mpi_env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    mpi_env.setdefault("OMPI_MCA_btl_tcp_if_include", "lo")
    results = [
        _run(worker_cmd + ["--threads", "2"], dict(env, OMP_NUM_THREADS="2")),
        _run([_mpirun(), "-n", "2", "--oversubscribe", "-x", "PYTHONPATH", "-x",
              "OMP_NUM_THREADS"] + worker_cmd + ["--threads", "1"], mpi_env),
    ]
    print(f"fit epoch, mlp 784-256-256-10, SGD, global batch {opts.batch}, "
          f"{opts.rows} samples × {opts.epochs} epochs")
    print(f"{'job':<22}{'samples/s':>12}{'bytes/step':>13}{'ring bytes/step':>17}"
          f"{'wait ms/step':>14}")
    for r in results:
        job = f"{r['ranks']} process × {r['threads']} thread"
        print(f"{job:<22}{r['samples_per_s']:>12.0f}{r['bytes_per_step']:>13,}"
              f"{r['ring_bytes_per_step']:>17,.0f}{r['wait_ms_per_step']:>14.3f}")
    os.makedirs(opts.out, exist_ok=True)
    path = os.path.join(opts.out, "distributed.json")
    with open(path, "w") as f:
        json.dump({"options": vars(opts), "results": results}, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
