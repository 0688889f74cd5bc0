"""The parent side: start one worker per framework, interleave their samples, collect.

Samples go A B C A B C …: each round asks every framework for one sample in turn, so
slow drift of the machine (thermal, other load) hits all of them alike.  Only one
worker computes at a time; the others block on their stdin.  A short pause before
each sample lets the previous worker's BLAS/OpenMP threads stop spinning (OpenBLAS
threads busy-wait ~0.1 s after a call) so they do not steal the next one's cores.
"""
from __future__ import annotations

import json
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

from .scenarios import (SCENARIOS, dense_forward_flops, dense_step_flops, ensure_data,
                        gemm_flops, gemm_variants, memory_arithmetic)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class WorkerDied(RuntimeError):
    pass


# ----------------------------------------------------------------------------- background load

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_jiffies():
    """Busy CPU time of the whole machine (all cores), in clock ticks."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]) - v[3] - v[4]  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


def _proc_jiffies(pid):
    """CPU time (user + system, all threads) of one process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, ValueError, IndexError):
        return None


class LoadProbe:
    """How much CPU *other* processes used while one worker took a sample.

    Returned as a fraction of the machine (1.0 = every core busy with something else).
    Catches other jobs on a shared machine and a previous worker's threads still spinning.
    """

    def __init__(self, pid):
        self.pid = pid
        self.me = os.getpid()

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.b0 = _busy_jiffies()
        self.w0 = _proc_jiffies(self.pid)
        self.p0 = _proc_jiffies(self.me)
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        b1, w1, p1 = _busy_jiffies(), _proc_jiffies(self.pid), _proc_jiffies(self.me)
        self.foreign = None
        if None not in (self.b0, self.w0, self.p0, b1, w1, p1) and wall > 0:
            other = (b1 - self.b0) - (w1 - self.w0) - (p1 - self.p0)
            self.foreign = max(0.0, other / (wall * _HZ * (os.cpu_count() or 1)))
        return False


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def worker_env(threads):
    env = os.environ.copy()
    for v in THREAD_VARS:
        env[v] = str(threads)
    if threads == 1:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    env["KERAS_BACKEND"] = "jax"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pick_cpus(threads):
    """Pin every worker to the same ``threads`` cores (none if that is all of them)."""
    try:
        avail = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return ""
    if threads >= len(avail):
        return ""
    return ",".join(map(str, avail[:threads]))


class WorkerProc:
    def __init__(self, framework, scenario, data, threads, cpus, log_dir):
        self.framework = framework
        os.makedirs(log_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, f"{scenario}-{framework}.log")
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "bench.worker", "--framework", framework,
               "--scenario", scenario, "--data", data, "--threads", str(threads)]
        if cpus:
            cmd += ["--cpus", cpus]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._log, cwd=ROOT, env=worker_env(threads),
                                  text=True, bufsize=1)
        self.q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def log_tail(self, n=15):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def recv(self, timeout):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerDied(f"no answer in {timeout:.0f} s")
        if line is None:
            self.p.wait()
            raise WorkerDied(f"worker exited (code {self.p.returncode}):\n{self.log_tail()}")
        return json.loads(line)

    def call(self, cmd, timeout=600.0, **kw):
        try:
            self.p.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(f"worker gone:\n{self.log_tail()}")
        return self.recv(timeout)

    def close(self):
        if self.p.poll() is None:
            try:
                self.call("quit", timeout=20)
            except Exception:
                pass
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


# ----------------------------------------------------------------------------- statistics

def summarize(times_s, k, flops=None, items=None):
    per = [t / k for t in times_s]
    med = statistics.median(per)
    out = {
        "k": k,
        "samples_s": times_s,
        "per_step_ms": [p * 1e3 for p in per],
        "median_ms": med * 1e3,
        "min_ms": min(per) * 1e3,
        "max_ms": max(per) * 1e3,
        "per_s": 1.0 / med,
    }
    if flops:
        out["gflops"] = flops / med / 1e9
    if items:
        out["items_per_s"] = items / med
    return out


def _close(a, b, rtol, atol=1e-6):
    return a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and \
        abs(a - b) <= atol + rtol * abs(b)


REFERENCE_ORDER = ("numpy", "torch", "jax", "keras")


def loss_check(sc, fws):
    """Compare the loss before and after one step (and N steps) across frameworks.

    Exact scenarios: before within 1e-4 and after within 1e-3 (relative) of the
    reference (the NumPy peer when it ran, else torch); where the scenario asks
    (``check_steps``), the loss after that many steps within ``check_rtol_n``.
    Dropout: before exact, after (and after N) only finite and within 10 %.  fit:
    before exact, after one shuffled epoch within 25 %.
    """
    ok = {f: r for f, r in fws.items() if r.get("status") == "ok" and "loss" in r}
    if not ok:
        return None
    # A peer is the reference (fastlayers is what is checked), NumPy first, then torch.
    ref_name = next((f for f in REFERENCE_ORDER if f in ok), sorted(ok)[0])
    ref = ok[ref_name]["loss"]
    after_rtol = 1e-3 if sc.exact_loss else (0.25 if sc.kind == "fit" else 0.10)
    n_rtol = sc.check_rtol_n if sc.exact_loss else after_rtol
    for f, r in ok.items():
        L = r["loss"]
        problems = []
        if not _close(L.get("before"), ref.get("before"), 1e-4):
            problems.append("before")
        if not _close(L.get("after"), ref.get("after"), after_rtol):
            problems.append("after")
        if "after_n" in ref and not _close(L.get("after_n"), ref["after_n"], n_rtol):
            problems.append(f"after {ref.get('n')} steps")
        fin = r.get("final", {})
        if fin and fin.get("finite") is False:
            problems.append("diverged")
        if problems:
            r["check"] = "MISMATCH: " + ", ".join(problems)
        else:
            r["check"] = "ok" if sc.exact_loss else "ok (close)"
    out = {"reference": ref_name, "after_rtol": after_rtol}
    if "after_n" in ref:
        out.update(steps=ref.get("n"), after_n_rtol=n_rtol)
    return out


def add_ratios(results, key="train"):
    """ratio = median / fastest *peer* median (peers = every framework but fastlayers)."""
    meds = {f: r["timings"][key]["median_ms"] for f, r in results.items()
            if r.get("status") == "ok" and key in r.get("timings", {})}
    peers = [m for f, m in meds.items() if f != "fastlayers"]
    best = min(peers) if peers else (min(meds.values()) if meds else None)
    for f, m in meds.items():
        results[f]["timings"][key]["ratio"] = m / best if best else None
    return best


# ----------------------------------------------------------------------------- one scenario

def run_scenario(name, frameworks, opts):
    sc = SCENARIOS[name]
    fws = [f for f in frameworks if f in sc.frameworks]
    log(f"\n== {name}: {sc.description}")
    res = {"name": name, "description": sc.description, "kind": sc.kind, "frameworks": {}}
    if sc.target:
        res["target_speedup"] = sc.target
    if sc.kind == "step":
        res["flops_per_step"] = dense_step_flops(sc)
        if sc.frozen:
            res["flops_forward"] = dense_forward_flops(sc)
            res["ideal_train_over_forward"] = dense_step_flops(sc) / dense_forward_flops(sc)
    if sc.kind == "fit":
        rows = sc.fit_rows // 10 if opts.quick else sc.fit_rows
        res["rows"] = rows
        res["flops_per_epoch"] = dense_step_flops(sc, 1) * rows
    if sc.kind == "gemm":
        res["variants"] = {n: {"flops": gemm_flops(p), "products": p} for n, p in gemm_variants(sc)}
    if name == "large" or sc.kind == "memory":
        res["memory_arithmetic"] = memory_arithmetic(SCENARIOS["large" if name == "large" else "mlp"])
    if not fws:
        return res
    data = ensure_data(sc, opts.out, opts.quick)
    cpus = pick_cpus(opts.threads)
    log_dir = os.path.join(opts.out, "logs")
    procs = {}
    R = res["frameworks"]
    try:
        for f in fws:
            procs[f] = WorkerProc(f, name, data, opts.threads, cpus, log_dir)
        live = {}
        for f, w in procs.items():
            try:
                hello = w.recv(timeout=900)
            except WorkerDied as e:
                R[f] = {"status": "error", "error": str(e)}
                log(f"  {f}: error starting: {e}")
                continue
            if not hello.get("ready"):
                R[f] = {"status": hello.get("status", "error"), "error": hello.get("error", "")}
                log(f"  {f}: {R[f]['status']} ({_first_line(R[f]['error'])})")
                w.close()
                continue
            R[f] = {"status": "ok", "versions": hello["versions"],
                    "rss_after_import": hello.get("rss_after_import")}
            live[f] = w
        built = {}
        for f, w in live.items():
            t0 = time.perf_counter()
            try:
                b = w.call("build", timeout=3600, target_s=opts.target, warmup_s=opts.warmup,
                           measure_rss=(name == "large"), mem_steps=opts.mem_steps)
            except WorkerDied as e:
                b = {"ok": False, "error": str(e)}
            if not b.get("ok"):
                R[f].update(status=b.get("status", "error"), error=b.get("error", ""))
                log(f"  {f}: {R[f]['status']} while building:\n{_indent(b.get('error', ''))}")
                w.close()
                continue
            b.pop("ok")
            R[f]["build"] = {k: v for k, v in b.items() if k in ("build_s", "first_step_s",
                                                                 "first_epoch_s", "whats")}
            for key in ("loss", "rss", "memory"):
                if key in b:
                    R[f][key] = b[key]
            R[f]["timings"] = {}
            built[f] = (w, b.get("whats", {}))
            lo = b.get("loss")
            extra = (f" loss {lo['before']:.6g} → {lo['after']:.6g}" if lo else "")
            log(f"  {f}: built in {time.perf_counter() - t0:.1f} s, k={b.get('whats')}{extra}")

        samples = {f: {what: [] for what in whats} for f, (w, whats) in built.items()}
        n_samples = 0 if sc.kind == "memory" else opts.samples
        loads = {f: {what: [] for what in whats} for f, (w, whats) in built.items()}
        retried = {f: 0 for f in built}
        kept_busy = {f: 0 for f in built}
        for rnd in range(n_samples):
            for f, (w, whats) in list(built.items()):
                for what, k in whats.items():
                    for attempt in range(opts.retries + 1):
                        # back off while something else loads the machine
                        time.sleep(opts.gap if attempt == 0 else 0.25 * 2 ** attempt)
                        try:
                            with LoadProbe(w.p.pid) as probe:
                                s = w.call("sample", what=what,
                                           timeout=max(120, 50 * opts.target * 10))
                        except WorkerDied as e:
                            s = {"ok": False, "error": str(e)}
                            break
                        busy = probe.foreign
                        if not s.get("ok") or busy is None or busy <= opts.max_background:
                            break
                        if attempt < opts.retries:
                            retried[f] += 1
                        else:
                            kept_busy[f] += 1
                        log(f"  {f}: {what} sample ran beside {busy:.0%} foreign CPU load; "
                            + ("retrying" if attempt < opts.retries else "keeping it"))
                    if s.get("ok"):
                        loads[f][what].append(busy)
                    if not s.get("ok"):
                        R[f].update(status="error", error=s.get("error", ""))
                        log(f"  {f}: error while sampling:\n{_indent(s.get('error', ''))}")
                        built.pop(f)
                        w.close()
                        break
                    samples[f][what].append(s["t"])
            log(f"  round {rnd + 1}/{n_samples} done")
        for f, (w, whats) in built.items():
            fl = [x for v in loads[f].values() for x in v if x is not None]
            R[f]["background_load"] = {"median": statistics.median(fl) if fl else None,
                                       "max": max(fl) if fl else None,
                                       "retried_samples": retried[f],
                                       "kept_busy_samples": kept_busy[f]}
            try:
                R[f]["final"] = w.call("final", timeout=600)
            except WorkerDied as e:
                R[f]["final"] = {"ok": False, "error": str(e)}
            for what, k in whats.items():
                ts = samples[f][what]
                if not ts:
                    continue
                if sc.kind == "gemm":
                    # "<set> (scipy sgemm)", "<set> (N threads × 1-thread BLAS)": same products
                    base = max((v for v in res["variants"] if what.startswith(v)), key=len)
                    st = summarize(ts, k, flops=res["variants"][base]["flops"])
                elif sc.kind == "fit":
                    st = summarize(ts, k, flops=res["flops_per_epoch"], items=res["rows"])
                elif what == "forward":
                    st = summarize(ts, k, flops=res["flops_forward"])
                else:
                    st = summarize(ts, k, flops=res["flops_per_step"] if name != "tiny" else None)
                st["background_load"] = loads[f][what]
                R[f]["timings"][what] = st
    finally:
        for w in procs.values():
            w.close()

    if sc.kind in ("step", "fit"):
        res["loss_check"] = loss_check(sc, R)
        res["fastest_peer_ms"] = add_ratios(R, "epoch" if sc.kind == "fit" else "train")
        if sc.frozen:
            add_ratios(R, "forward")
            for f, r in R.items():
                t = r.get("timings", {})
                if "train" in t and "forward" in t:
                    r["train_over_forward"] = t["train"]["median_ms"] / t["forward"]["median_ms"]
    if sc.kind == "gemm":
        for v in res["variants"]:
            meds = {f: r["timings"][v]["median_ms"] for f, r in R.items()
                    if r.get("status") == "ok" and v in r.get("timings", {})}
            if meds:
                best = min(meds.values())
                for f, m in meds.items():
                    R[f]["timings"][v]["ratio"] = m / best
    for f, r in R.items():
        t = r.get("timings", {})
        main = t.get("epoch") or t.get("train")
        if main:
            log(f"  {f:>10}: {main['median_ms']:.4g} ms median "
                f"[{main['min_ms']:.4g}–{main['max_ms']:.4g}]  x{main.get('ratio') or 0:.2f}  "
                f"{r.get('check', '')}")
        elif sc.kind == "gemm":
            for v, st in t.items():
                log(f"  {f:>10}: {v}: {st['median_ms']:.4g} ms, {st['gflops']:.1f} GFLOP/s")
        elif "memory" in r:
            m = r["memory"]
            log(f"  {f:>10}: net growth {m['net_growth_per_step_bytes']:.1f} B/step, "
                f"peak {m['peak_above_start_bytes']} B above start")
    return res


def _first_line(s):
    s = (s or "").strip().splitlines()
    return s[-1] if s else ""


def _indent(s):
    return "".join("    " + line for line in (s or "").splitlines(True)[-10:])
