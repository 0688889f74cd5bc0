"""Markdown, JSON and PNG output of a run."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys

from .peers import FRAMEWORKS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- machine & versions

def machine_info():
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/cpuinfo") as f:
            flags = next((l for l in f if l.startswith("flags")), "")
            info["simd"] = " ".join(x for x in ("avx2", "fma", "avx512f") if f" {x}" in flags)
    except OSError:
        pass
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "bench",
                                "fastlayers", "csrc"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (rev or "no commit") + (" (dirty)" if dirty else "")
    except Exception:
        return "?"


def collect_versions(results):
    v = {}
    for sc in results["scenarios"].values():
        for f, r in sc["frameworks"].items():
            for k, val in (r.get("versions") or {}).items():
                v.setdefault(k, val)
            if r.get("status") in ("not installed", "import failed"):
                v.setdefault(f, r["status"])
    return v


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------- formatting

def _ms(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.1:
        return f"{x:.3f}"
    return f"{x:.4f}"


def _num(x, nd=1):
    if x is None:
        return "–"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _bytes(b):
    if b is None:
        return "–"
    a = abs(b)
    if a >= 2**20:
        return f"{b / 2**20:.1f} MiB"
    if a >= 2**10:
        return f"{b / 2**10:.1f} KiB"
    return f"{b:.0f} B"


def _status_row(f, r, ncols):
    why = r.get("status", "?")
    err = (r.get("error") or "").strip().splitlines()
    if err and why not in ("not installed",):
        why += f": {err[-1][:90]}"
    return f"| {f} | {why} |" + " |" * (ncols - 2)


def _order(fws):
    return [f for f in FRAMEWORKS if f in fws] + [f for f in fws if f not in FRAMEWORKS]


def markdown(results, title="fastlayers benchmark"):
    meta = results["meta"]
    L = [f"# {title}", ""]
    if meta.get("quick"):
        L += ["> **Quick smoke run** (few, short samples; fit on 6000 rows): numbers are "
              "indicative only.", ""]
    L += [f"- Date: {meta['date']}",
          f"- Machine: {meta['machine'].get('cpu')}, {meta['machine'].get('usable_cores')} usable "
          f"cores ({meta['machine'].get('simd', '')}), {meta['machine'].get('memory_gib')} GiB, "
          f"{meta['machine'].get('platform')}, Python {meta['machine'].get('python')}",
          f"- Checkout: {meta.get('git')}",
          f"- Settings: {meta['threads']} thread{'s' if meta['threads'] != 1 else ''} for every "
          f"framework; {meta['samples']} samples "
          f"per framework, interleaved; each sample ≈ {meta['target_s']} s of steps; "
          "float32, plain SGD(0.01) (RMSprop / AdamW where the scenario says), identical "
          "initial weights and data",
          "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
          ""]
    sc_res = results["scenarios"]

    # overview
    step_like = [n for n, s in sc_res.items() if s["kind"] in ("step", "fit")]
    if step_like:
        fws = _order({f for n in step_like for f in sc_res[n]["frameworks"]})
        L += ["## Overview", "",
              "Median time per training step (per epoch for `fit`); in brackets the ratio to "
              "the fastest peer (peers = every framework but fastlayers; < 1 beats them all).", "",
              "| scenario | " + " | ".join(fws) + " |",
              "|---|" + "---:|" * len(fws)]
        for n in step_like:
            key = "epoch" if sc_res[n]["kind"] == "fit" else "train"
            unit = "s" if key == "epoch" else "ms"
            cells = []
            for f in fws:
                r = sc_res[n]["frameworks"].get(f)
                t = (r or {}).get("timings", {}).get(key)
                if t:
                    v = t["median_ms"] / (1000 if key == "epoch" else 1)
                    cells.append(f"{_ms(v)} {unit} ({t.get('ratio') or 0:.2f}×)")
                else:
                    cells.append((r or {}).get("status", "–") if r else "–")
            L.append(f"| {n} | " + " | ".join(cells) + " |")
        L.append("")
        L += _targets(sc_res)

    for n, s in sc_res.items():
        R = s["frameworks"]
        if not R:
            continue
        L += [f"## `{n}`", "", s["description"], ""]
        if s["kind"] == "step":
            has_flops = s.get("flops_per_step") and n != "tiny"
            extra = " fwd-only ms | train / fwd |" if "flops_forward" in s else ""
            hdr = ("| framework | ms/step (median) | min–max | steps/s |"
                   + (" GFLOP/s |" if has_flops else "") + " × fastest peer |" + extra
                   + " loss check |")
            ncols = hdr.count("|") - 1
            L += [hdr, "|---|" + "---:|" * (ncols - 2) + "---|"]
            for f in _order(R):
                r = R[f]
                t = r.get("timings", {}).get("train")
                if not t:
                    L.append(_status_row(f, r, ncols))
                    continue
                row = (f"| {f} | {_ms(t['median_ms'])} | {_ms(t['min_ms'])}–{_ms(t['max_ms'])} | "
                       f"{_num(t['per_s'])} |")
                if has_flops:
                    row += f" {_num(t.get('gflops'))} |"
                row += f" {t.get('ratio') or 0:.2f} |"
                if extra:
                    fw = r["timings"].get("forward")
                    row += (f" {_ms(fw['median_ms'])} | {r.get('train_over_forward', 0):.2f} |"
                            if fw else " – | – |")
                row += f" {r.get('check', '–')} |"
                L.append(row)
            L.append("")
            if has_flops:
                L.append(f"GEMM work per step: {s['flops_per_step'] / 1e9:.3g} GFLOP "
                         "(forward, dW of trainable layers, dX only where a trainable layer "
                         "lies below).")
            if "ideal_train_over_forward" in s:
                L.append(f"A frozen step needs only {s['ideal_train_over_forward']:.2f}× the "
                         "GEMM work of a forward pass (forward + dW of the last layer; no "
                         "gradient below it).")
            L.append("")
        elif s["kind"] == "fit":
            hdr = ("| framework | s/epoch (median) | min–max | samples/s | GFLOP/s | "
                   "× fastest peer | loss check |")
            L += [hdr, "|---|---:|---:|---:|---:|---:|---|"]
            for f in _order(R):
                r = R[f]
                t = r.get("timings", {}).get("epoch")
                if not t:
                    L.append(_status_row(f, r, 7))
                    continue
                L.append(f"| {f} | {t['median_ms'] / 1e3:.3f} | {t['min_ms'] / 1e3:.3f}–"
                         f"{t['max_ms'] / 1e3:.3f} | {_num(t['items_per_s'], 0)} | "
                         f"{_num(t.get('gflops'))} | {t.get('ratio') or 0:.2f} | "
                         f"{r.get('check', '–')} |")
            L += ["", f"{s['rows']} rows, batch 128 (last batch partial), shuffled every epoch; "
                  "peers without a `fit` (torch, JAX, NumPy) run their own shuffled loop over "
                  "index batches.", ""]
        elif s["kind"] == "gemm":
            L += ["| GEMM set | framework | ms (median) | min–max | GFLOP/s | × best |",
                  "|---|---|---:|---:|---:|---:|"]
            for v, vinfo in s["variants"].items():
                for f in _order(R):
                    t = R[f].get("timings", {}).get(v)
                    if t:
                        L.append(f"| {v} | {f} | {_ms(t['median_ms'])} | {_ms(t['min_ms'])}–"
                                 f"{_ms(t['max_ms'])} | {_num(t['gflops'])} | "
                                 f"{t.get('ratio') or 0:.2f} |")
            for v in [v for v in _all_timing_keys(R) if v not in s["variants"]]:
                for f in _order(R):
                    t = R[f].get("timings", {}).get(v)
                    if t:
                        L.append(f"| {v} | {f} | {_ms(t['median_ms'])} | {_ms(t['min_ms'])}–"
                                 f"{_ms(t['max_ms'])} | {_num(t['gflops'])} | – |")
            for f in _order(R):
                if R[f].get("status") != "ok":
                    L.append(f"| – | {f} | {R[f].get('status')} | | | |")
            L += ["", "The GEMMs of one `large` step (forward X·W, dW = Xᵀ·dY, dX = dY·Wᵀ) bound "
                  "that step from below; the `mlp` set does the same for `mlp`. The "
                  "\"threads × 1-thread BLAS\" row splits the product over the cores by hand; "
                  "\"scipy sgemm\" is the BLAS call fastlayers' kernels make. These rates drift "
                  "by up to ~10 % between runs on this machine, so a training step measured in "
                  "another scenario can land a little above them.", ""]
        elif s["kind"] == "memory":
            L += _memory_section(s)

    # RSS of large
    lg = sc_res.get("large")
    if lg and any("rss" in r for r in lg["frameworks"].values()):
        a = lg["memory_arithmetic"]
        L += ["## Peak RSS of `large`", "",
              f"Arithmetic: weights {_bytes(a['weights'])} + optimizer state "
              f"{_bytes(a['optimizer_state'])} (plain SGD) + activations "
              f"{_bytes(a['activations'])} + batch {_bytes(a['batch'])} = "
              f"**{_bytes(a['minimum'])}**; a separate gradient buffer per weight adds "
              f"{_bytes(a['with_gradients'] - a['minimum'])} "
              f"(= {_bytes(a['with_gradients'])}).", "",
              "| framework | RSS after import | peak while training | training peak − import |"
              " ÷ arithmetic minimum |",
              "|---|---:|---:|---:|---:|"]
        for f in _order(lg["frameworks"]):
            r = lg["frameworks"][f]
            m = r.get("rss")
            if not m:
                continue
            d = m["peak_training"] - m["after_import"]
            L.append(f"| {f} | {_bytes(m['after_import'])} | {_bytes(m['peak_training'])} | "
                     f"{_bytes(d)} | {d / a['minimum']:.2f} |")
        L += ["", "Peak = the kernel's VmHWM, reset after warm-up (so JIT compilation and the "
              "loaded copy of the initial weights are not counted), over ≥ 3 steps.", ""]

    # background load
    lrows, kept_total, retried_total = [], 0, 0
    for n, s in sc_res.items():
        for f in _order(s["frameworks"]):
            bl = s["frameworks"][f].get("background_load")
            if not bl or bl.get("median") is None:
                continue
            kept_total += bl.get("kept_busy_samples", 0)
            retried_total += bl.get("retried_samples", 0)
            if not (bl.get("retried_samples") or bl.get("kept_busy_samples")
                    or bl["median"] > 0.05):
                lrows.append(None)  # quiet row: counted, not shown
                continue
            lrows.append(f"| {n} | {f} | {bl['median']:.0%} | {bl['max']:.0%} | "
                         f"{bl.get('retried_samples', 0)} | {bl.get('kept_busy_samples', 0)} |")
    if lrows and not kept_total and not retried_total:
        peak = max(bl["max"] for s in sc_res.values() for r in s["frameworks"].values()
                   for bl in [r.get("background_load")] if bl and bl.get("max") is not None)
        L += ["## Machine load during samples", "",
              f"Quiet: no sample ran beside more than {meta.get('max_background', 0.1):.0%} "
              f"foreign CPU load (the most seen: {peak:.0%} of the machine).", ""]
    elif lrows:
        thr = meta.get("max_background")
        L += ["## Machine load during samples", "",
              "CPU used by *other* processes while a sample ran, as a fraction of the machine "
              f"(from /proc/stat minus the worker's own time). A sample beside more than "
              f"{thr:.0%} was redone after a back-off; one still disturbed after "
              "the retries was kept and is counted here.", ""]
        if kept_total:
            L += [f"> **{kept_total} sample(s) ran on a busy machine** and are in the numbers "
                  "above: treat those rows with care.", ""]
        L += ["Rows not shown had no redone sample.", "",
              "| scenario | framework | median | max | redone | kept while busy |",
              "|---|---|---:|---:|---:|---:|"] + [r for r in lrows if r] + [""]

    # loss check
    rows = []
    for n, s in sc_res.items():
        for f in _order(s["frameworks"]):
            r = s["frameworks"][f]
            lo = r.get("loss")
            if lo:
                fin = (r.get("final") or {}).get("loss_final")
                after_n = f"{lo['after_n']:.7g} ({lo.get('n')})" if "after_n" in lo else "–"
                rows.append(f"| {n} | {f} | {lo['before']:.7g} | {lo['train']:.7g} | "
                            f"{lo['after']:.7g} | {after_n} | "
                            f"{'–' if fin is None else f'{fin:.4g}'} | {r.get('check', '–')} |")
    if rows:
        L += ["## Loss check", "",
              "Inference-mode loss on the benchmark batch before any step, the loss the first "
              "training step reports, the inference loss after that one step, after N steps "
              "(the scenarios that ask for it; N in brackets), and after all the "
              "timed steps.  `fit`: after one shuffled epoch, evaluated on 1024 rows.", "",
              "| scenario | framework | before | step 1 (train) | after 1 step | after N steps |"
              " after timing | check |",
              "|---|---|---:|---:|---:|---:|---:|---|"] + rows + [""]
    return "\n".join(L)


def _targets(sc_res):
    """Issue 7's targets: fastlayers' speed-up over the fastest peer, against the target."""
    rows = []
    for n, s in sc_res.items():
        want = s.get("target_speedup")
        if not want:
            continue
        key = "epoch" if s["kind"] == "fit" else "train"
        t = s["frameworks"].get("fastlayers", {}).get("timings", {}).get(key)
        if t and t.get("ratio"):
            got = 1.0 / t["ratio"]
            rows.append(f"| {n} | ≥ {want:g}× | {got:.2f}× | {'yes' if got >= want else '**no**'} |")
        else:
            status = s["frameworks"].get("fastlayers", {}).get("status", "not run")
            rows.append(f"| {n} | ≥ {want:g}× | {status} | – |")
    if not rows:
        return []
    return ["### Targets", "",
            "Fastest peer's median ÷ fastlayers' median (issue 7; `large` and `frozen` are "
            "measured against the `gemm` ceiling instead).", "",
            "| scenario | target | fastlayers | met |", "|---|---:|---:|---|"] + rows + [""]


def _all_timing_keys(R):
    keys = []
    for r in R.values():
        for k in r.get("timings", {}):
            if k not in keys:
                keys.append(k)
    return keys


def _memory_section(s):
    L = []
    a = s.get("memory_arithmetic") or {}
    rows = []
    for f in _order(s["frameworks"]):
        r = s["frameworks"][f]
        m = r.get("memory")
        if not m:
            rows.append(_status_row(f, r, 6))
            continue
        rows.append(f"| {f} | {m['steps']} | {_bytes(m['net_growth_bytes'])} | "
                    f"{m['net_growth_per_step_bytes']:.1f} B | "
                    f"{_bytes(m['single_step_peak_bytes_median'])} / "
                    f"{_bytes(m['single_step_peak_bytes_max'])} | "
                    f"{_bytes(m['peak_above_start_bytes'])} |")
    L += ["Python-heap allocations seen by `tracemalloc` (NumPy reports its buffers to it) "
          "in steady-state training (`train_on_batch` on `mlp`, after warm-up). Target: "
          "nothing per step.", "",
          "| framework | steps | net growth | per step | one step's peak (median / max) | "
          "peak over the run |",
          "|---|---:|---:|---:|---:|---:|"] + rows
    if a:
        L += ["", f"For scale: one `mlp` step's activations are {_bytes(a['activations'])}, "
              f"its weights {_bytes(a['weights'])}."]
    for f in _order(s["frameworks"]):
        m = s["frameworks"][f].get("memory")
        if m and m.get("top_growth") and m["net_growth_bytes"] > 0:
            L += ["", f"Where {f}'s net growth was allocated:", ""]
            L += [f"- `{t['where']}`: {_bytes(t['bytes'])} in {t['blocks']} blocks"
                  for t in m["top_growth"][:5]]
    L.append("")
    return L


# ----------------------------------------------------------------------------- chart

def chart(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # matplotlib is optional
        return f"no chart ({e.__class__.__name__}: {e})"
    sc_res = results["scenarios"]
    names = [n for n, s in sc_res.items() if s["kind"] in ("step", "fit")]
    fws = _order({f for n in names for f, r in sc_res[n]["frameworks"].items()
                  if r.get("timings")})
    if not names or not fws:
        return "no chart (nothing timed)"
    colors = {"fastlayers": "#d62728", "torch": "#ee8a2f", "jax": "#1f77b4",
              "keras": "#9467bd", "numpy": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 4.5), dpi=110)
    width = 0.8 / len(fws)
    for i, f in enumerate(fws):
        xs, ys = [], []
        for j, n in enumerate(names):
            key = "epoch" if sc_res[n]["kind"] == "fit" else "train"
            t = sc_res[n]["frameworks"].get(f, {}).get("timings", {}).get(key)
            if t and t.get("ratio"):
                xs.append(j + (i - (len(fws) - 1) / 2) * width)
                ys.append(t["ratio"])
        ax.bar(xs, ys, width, label=f, color=colors.get(f),
                      edgecolor="black" if f == "fastlayers" else None)
        for x, y in zip(xs, ys):
            ax.text(x, y, f"{y:.2g}", ha="center", va="bottom", fontsize=6.5, rotation=90)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, 0.5), hi * 3)  # room for the value labels and the legend
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("time per step ÷ fastest peer (log; lower is better)")
    ttl = "fastlayers vs peers" if "fastlayers" in fws else "peers (fastlayers not run)"
    ax.set_title(f"{ttl} — {results['meta']['threads']} threads, {results['meta']['date']}")
    ax.legend(ncol=len(fws), fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(results, path):
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
