"""One framework × one scenario, in its own process, serving timing requests.

    python -m bench.worker --framework torch --scenario mlp --data out/data/mlp-v2.npz

It imports only its framework, then reads JSON-line commands on stdin and answers
with one JSON line each on the original stdout (anything a library prints goes to
stderr instead, so it cannot corrupt the protocol):

    {"cmd": "build", ...}        build the model, loss check, warm up, calibrate k
    {"cmd": "sample", "what": w} time k steps of w ("train", "forward", "epoch", a GEMM set)
    {"cmd": "final"}             inference loss after all the timed steps
    {"cmd": "quit"}

The parent keeps one worker per framework alive and interleaves their samples.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import sys
import time
import traceback

from .peers import Unavailable

_PROTO = None


def _send(obj):
    _PROTO.write(json.dumps(obj, default=_jsonable) + "\n")
    _PROTO.flush()


def _jsonable(o):
    try:
        return float(o)
    except Exception:
        return str(o)


# ----------------------------------------------------------------------------- memory probes

def _status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss():
    v = _status("VmRSS")
    if v is None:
        import resource

        v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return v


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss():
    v = _status("VmHWM")
    if v is None:
        import resource

        v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return v


# ----------------------------------------------------------------------------- timing helpers

def _time(fn, k):
    t0 = time.perf_counter()
    fn(k)
    return time.perf_counter() - t0


def warm(fn, seconds, min_calls=3):
    t_end = time.perf_counter() + seconds
    n = 0
    while n < min_calls or time.perf_counter() < t_end:
        fn(1)
        n += 1
    return n


def calibrate(fn, target):
    """k such that fn(k) takes about ``target`` seconds (at least 1)."""
    k = 1
    while True:
        dt = _time(fn, k)
        if dt >= target / 4 or k >= 1 << 22:
            break
        k = max(k * 2, int(k * (target / 4) / max(dt, 1e-7)))
    return max(1, int(round(k * target / dt)))


def _finite(x):
    return x is not None and math.isfinite(x)


# ----------------------------------------------------------------------------- the worker

class Worker:
    def __init__(self, args):
        from .scenarios import SCENARIOS

        self.args = args
        self.sc = SCENARIOS[args.scenario]
        self.runner = None
        self.whats = {}

    def start(self):
        self.rss_before_import = rss()
        name = self.args.framework
        try:
            self.peer = importlib.import_module(f"bench.peers.{name}_peer")
            versions = self.peer.setup(self.args.threads)
        except ImportError as e:
            missing = getattr(e, "name", None)
            top = {"fastlayers": "fastlayers", "torch": "torch", "jax": "jax",
                   "keras": "keras", "numpy": "numpy"}[name]
            if isinstance(e, ModuleNotFoundError) and missing in (top, "jaxlib", "optax"):
                return {"ready": False, "status": "not installed", "error": str(e)}
            return {"ready": False, "status": "import failed", "error": _tb()}
        except Exception:
            return {"ready": False, "status": "import failed", "error": _tb()}
        self.rss_after_import = rss()
        return {"ready": True, "versions": versions, "pid": os.getpid(),
                "rss_before_import": self.rss_before_import,
                "rss_after_import": self.rss_after_import}

    # -- build ------------------------------------------------------------------------
    def build(self, target_s, warmup_s, measure_rss=False, mem_steps=1000):
        from .scenarios import load_arrays

        sc = self.sc
        arrays = load_arrays(self.args.data)
        out = {"ok": True}
        if sc.kind == "gemm":
            variants = self.peer.build_gemm(sc, arrays) if hasattr(self.peer, "build_gemm") else {}
            if not variants:
                return {"ok": False, "status": "n/a", "error": "no GEMM runner for this framework"}
            self.variants = variants
            for name, fn in variants.items():
                warm(fn, warmup_s / len(variants), 2)
                self.whats[name] = calibrate(fn, target_s)
            out["whats"] = self.whats
            return out

        t0 = time.perf_counter()
        try:
            r = self.runner = self.peer.build(sc, arrays)
        except Unavailable as e:
            return {"ok": False, "status": "n/a", "error": str(e)}
        out["build_s"] = time.perf_counter() - t0
        loss = out["loss"] = {}
        loss["before"] = r.eval_loss()
        if sc.kind == "fit":
            t0 = time.perf_counter()
            loss["train"] = r.fit_epoch()  # warm-up epoch (compiles both batch shapes)
            out["first_epoch_s"] = time.perf_counter() - t0
            loss["after"] = r.eval_loss()
            self.whats["epoch"] = 1
            out["whats"] = self.whats
            return out

        t0 = time.perf_counter()
        loss["train"] = r.train_step()
        out["first_step_s"] = time.perf_counter() - t0  # includes any JIT compile
        loss["after"] = r.eval_loss()
        if sc.check_steps > 1:
            r.train(sc.check_steps - 1)
            loss["after_n"] = r.eval_loss()
            loss["n"] = sc.check_steps

        if sc.kind == "memory":
            warm(r.train, warmup_s, 20)
            out["memory"] = self.tracemalloc_run(mem_steps)
            return out

        del arrays
        gc.collect()
        rss_built = rss()
        warm(r.train, warmup_s, 3)
        self.whats["train"] = calibrate(r.train, target_s)
        if sc.frozen:
            warm(r.forward, warmup_s / 2, 3)
            self.whats["forward"] = calibrate(r.forward, target_s)
        if measure_rss:
            ok = reset_peak_rss()
            r.train(max(3, self.whats["train"]))
            out["rss"] = {
                "before_import": self.rss_before_import,
                "after_import": self.rss_after_import,
                "built": rss_built,
                "peak_training": peak_rss(),
                "peak_reset": ok,
                "after_training": rss(),
            }
        out["whats"] = self.whats
        return out

    def tracemalloc_run(self, n):
        import tracemalloc

        r = self.runner
        gc.collect()
        tracemalloc.start(5)
        try:
            r.train(5)  # let anything lazily created under tracing settle
            gc.collect()
            snap0 = tracemalloc.take_snapshot()
            start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            r.train(n)
            cur, peak = tracemalloc.get_traced_memory()
            gc.collect()
            cur_gc = tracemalloc.get_traced_memory()[0]
            snap1 = tracemalloc.take_snapshot()
            # peak of a single step on its own
            singles = []
            for _ in range(20):
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                r.train(1)
                singles.append(tracemalloc.get_traced_memory()[1] - before)
            filt = [tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
            top = []
            for st in snap1.filter_traces(filt).compare_to(snap0.filter_traces(filt), "lineno")[:8]:
                if st.size_diff > 0:
                    fr = st.traceback[0]
                    top.append({"where": f"{fr.filename}:{fr.lineno}", "bytes": st.size_diff,
                                "blocks": st.count_diff})
        finally:
            tracemalloc.stop()
        return {
            "steps": n,
            "net_growth_bytes": cur_gc - start,
            "net_growth_before_gc_bytes": cur - start,
            "net_growth_per_step_bytes": (cur_gc - start) / n,
            "peak_above_start_bytes": peak - start,
            "single_step_peak_bytes_max": max(singles),
            "single_step_peak_bytes_median": sorted(singles)[len(singles) // 2],
            "top_growth": top,
        }

    # -- samples ----------------------------------------------------------------------
    def sample(self, what):
        k = self.whats[what]
        if self.sc.kind == "gemm":
            fn = self.variants[what]
        elif what == "epoch":
            fn = lambda k: self.runner.fit_epoch()  # noqa: E731
        elif what == "forward":
            fn = self.runner.forward
        else:
            fn = self.runner.train
        return {"ok": True, "t": _time(fn, k), "k": k}

    def final(self):
        if self.runner is None:
            return {"ok": True}
        v = self.runner.eval_loss()
        return {"ok": True, "loss_final": v, "finite": _finite(v)}


def _tb():
    return "".join(traceback.format_exc().splitlines(True)[-12:])


def main(argv=None):
    global _PROTO
    # Private channel for the protocol; fd 1 (library chatter) goes to stderr.
    _PROTO = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("--framework", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cpus", default="", help="comma-separated CPU ids to pin to")
    args = p.parse_args(argv)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        except OSError:
            pass

    w = Worker(args)
    hello = w.start()
    _send(hello)
    if not hello.get("ready"):
        return 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            _send({"ok": True})
            break
        try:
            if cmd == "build":
                res = w.build(**msg)
            elif cmd == "sample":
                res = w.sample(msg["what"])
            elif cmd == "final":
                res = w.final()
            else:
                res = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception:
            res = {"ok": False, "status": "error", "error": _tb()}
        _send(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
