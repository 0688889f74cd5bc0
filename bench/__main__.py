"""python -m bench: fastlayers against PyTorch, JAX, Keras 3 and plain NumPy.

Examples:

    python -m bench                                  # everything, 7 samples, 2 threads
    python -m bench --quick                          # smoke run, a minute or two
    python -m bench --scenarios mlp,tiny --frameworks fastlayers,torch
    python -m bench --scenarios graphs               # the seeds' graphs + RMSprop/AdamW
    python -m bench --save-results                   # also rewrite bench/RESULTS.md
    python -m bench --distributed [--epochs 3]       # 1 process × 2 threads vs mpirun -n 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import report
from .peers import FRAMEWORKS
from .runner import log, run_scenario
from .scenarios import GROUPS, ORDER

HERE = os.path.dirname(os.path.abspath(__file__))


def _list(value, allowed, what, groups=None):
    if value in (None, "", "all"):
        return list(allowed)
    groups = groups or {}
    items = []
    for v in (v.strip() for v in value.split(",")):
        for name in groups.get(v, (v,) if v else ()):
            if name not in items:
                items.append(name)
    bad = [v for v in items if v not in allowed]
    if bad:
        choices = ", ".join(list(allowed) + [f"{g} (= {','.join(m)})" for g, m in groups.items()])
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {choices})")
    return items


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="all",
                   help=f"comma list of {','.join(ORDER)} or of the groups "
                        + ", ".join(f"{g} (= {','.join(m)})" for g, m in GROUPS.items()))
    p.add_argument("--frameworks", default="all", help=f"comma list of {','.join(FRAMEWORKS)}")
    p.add_argument("--samples", type=int, default=None,
                   help="interleaved samples per framework (default 7; 3 with --quick)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for every framework (BLAS/OpenMP env vars, torch."
                        "set_num_threads, CPU affinity when fewer than the cores)")
    p.add_argument("--target", type=float, default=None,
                   help="seconds of steps per sample (default 0.3; 0.05 with --quick)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of warm-up steps before calibration (default 1.0)")
    p.add_argument("--gap", type=float, default=None,
                   help="pause before each sample so idle BLAS threads stop spinning "
                        "(default 0.15 s; shorter lets the previous worker's spinning "
                        "threads slow the next one down)")
    p.add_argument("--max-background", type=float, default=0.10,
                   help="redo a sample when other processes used more than this fraction of "
                        "the machine's CPU during it (default 0.10)")
    p.add_argument("--retries", type=int, default=4,
                   help="redos per sample for --max-background, with back-off 0.5, 1, 2, 4 s "
                        "(default 4); a sample still disturbed after that is kept and counted")
    p.add_argument("--mem-steps", type=int, default=None,
                   help="steps under tracemalloc in the memory scenario (default 1000)")
    p.add_argument("--out", default=os.path.join(HERE, "out"), help="output directory")
    p.add_argument("--quick", action="store_true", help="fast smoke run")
    p.add_argument("--distributed", action="store_true",
                   help="instead: fit samples/s of 1 process × 2 threads against mpirun -n 2 "
                        "× 1 thread, bytes and wait per step (bench/distributed.py; its own "
                        "options: --epochs, --rows, --batch, --out)")
    p.add_argument("--from-json", metavar="PATH",
                   help="re-render the report of an earlier run's results.json; runs nothing")
    p.add_argument("--save-results", action="store_true",
                   help="write the report to bench/RESULTS.md (refused with --quick)")
    a = p.parse_args(argv)
    a.scenarios = _list(a.scenarios, ORDER, "scenario", GROUPS)
    a.frameworks = _list(a.frameworks, FRAMEWORKS, "framework")
    q = a.quick
    a.samples = a.samples if a.samples is not None else (3 if q else 7)
    a.target = a.target if a.target is not None else (0.05 if q else 0.3)
    a.warmup = a.warmup if a.warmup is not None else (0.1 if q else 1.0)
    a.gap = a.gap if a.gap is not None else 0.15
    a.mem_steps = a.mem_steps if a.mem_steps is not None else (200 if q else 1000)
    if a.samples < 1:
        p.error("--samples must be >= 1")
    if a.save_results and q:
        p.error("--save-results keeps full runs only; drop --quick")
    a.out = os.path.abspath(a.out)
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--distributed" in argv:
        from . import distributed

        return distributed.main([a for a in argv if a != "--distributed"])
    opts = parse(argv)
    os.makedirs(opts.out, exist_ok=True)
    if opts.from_json:
        import json

        with open(opts.from_json) as f:
            results = json.load(f)
        if opts.save_results and results["meta"].get("quick"):
            raise SystemExit("--save-results keeps full runs only; that run was --quick")
        return finish(results, opts)
    t0 = time.time()
    results = {"meta": {
        "date": report.now_utc(),
        "machine": report.machine_info(),
        "git": report.git_rev(),
        "threads": opts.threads,
        "samples": opts.samples,
        "target_s": opts.target,
        "warmup_s": opts.warmup,
        "gap_s": opts.gap,
        "max_background": opts.max_background,
        "quick": opts.quick,
        "scenarios": opts.scenarios,
        "frameworks": opts.frameworks,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
    }, "scenarios": {}}
    if opts.samples < 5 and not opts.quick:
        log(f"note: {opts.samples} samples; the report is meant for >= 5")
    try:
        for name in opts.scenarios:
            results["scenarios"][name] = run_scenario(name, opts.frameworks, opts)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    results["meta"]["versions"] = report.collect_versions(results)
    results["meta"]["elapsed_s"] = round(time.time() - t0, 1)
    return finish(results, opts)


def finish(results, opts):
    md = report.markdown(results)
    json_path = os.path.join(opts.out, "results.json")
    md_path = os.path.join(opts.out, "results.md")
    png_path = os.path.join(opts.out, "results.png")
    report.write_json(results, json_path)
    chart = report.chart(results, png_path)
    with open(md_path, "w") as f:
        f.write(md + "\n")
        if chart == png_path:
            f.write(f"\n![fastlayers vs peers]({os.path.basename(png_path)})\n")
    print(md)
    log(f"\nwrote {md_path}, {json_path}" + (f", {png_path}" if chart == png_path else f" ({chart})")
        + f" in {results['meta']['elapsed_s']} s")
    if opts.save_results:
        save_results(results, md, chart == png_path, png_path)
    return 0


def save_results(results, md, have_png, png_path):
    fl_ran = any(r.get("status") == "ok" and r.get("timings")
                 for s in results["scenarios"].values()
                 for f, r in s["frameworks"].items() if f == "fastlayers")
    head = ""
    if not fl_ran:
        head = ("> **Peers only.** fastlayers did not run in this run (not built yet or not "
                "importable), so this file shows the peers' numbers and the machine's GEMM "
                "ceiling only.\n\n")
    body = md.replace("# fastlayers benchmark", "# fastlayers benchmark — latest full run", 1)
    title, rest = body.split("\n", 1)
    text = title + "\n\n" + head + rest.lstrip("\n")
    text += ("\n\nWritten by `" + results["meta"]["command"].strip() + "`. Reproduce from the "
             "checkout with `python -m bench --save-results` (see bench/README.md); the numbers "
             "move with the fastlayers commit and with whatever else the machine is doing "
             "(see the load table).\n")
    if have_png:
        import shutil

        shutil.copyfile(png_path, os.path.join(HERE, "RESULTS.png"))
        text += "\n![fastlayers vs peers](RESULTS.png)\n"
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    log(f"wrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    sys.exit(main())
