"""A/B two built fastlayers checkouts on the CNN scenarios (fastlayers only).

    python -m bench.ab OLD_CHECKOUT NEW_CHECKOUT [--scenarios cnn-frozen,cnn-mnist]
                       [--rounds 3] [--runs 15]

Each round runs every (scenario, checkout) in a fresh process, alternating the
checkouts; a process times ``--runs`` runs of a fixed number of training steps and
reports its fastest run (the least disturbed on a shared machine).  The table
gives, per scenario and checkout, the range of those minima over the rounds.  Both
checkouts must be built in place (``python setup.py build_ext --inplace``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .cnn import CNNS

# Steps per timed run: about 0.1-0.2 s each.
_STEPS = {"cnn-small": 200, "cnn-mnist": 20, "cnn-frozen": 100}

_CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
import fastlayers as fl   # the checkout's
assert fl.__file__.startswith({root!r}), fl.__file__
sys.path.insert(0, {here!r})
sys.modules.pop("bench", None)
from bench.cnn import CNNS, make_arrays   # this bench's scenarios
c = CNNS[{name!r}]
arrays = make_arrays(c, 64, np.random.default_rng(0))
L = fl.layers
layers = [fl.Input(shape=c.input)]
for spec in c.layers:
    kind = spec[0]
    if kind == "conv":
        _, n, f, k, pad, act = spec
        layers.append(L.Conv2D(f, k, padding=pad, activation=act, name=n))
    elif kind == "dense":
        layers.append(L.Dense(spec[2], activation=spec[3], name=spec[1]))
    elif kind == "pool":
        layers.append(L.MaxPooling2D(2))
    elif kind == "gap":
        layers.append(L.GlobalAveragePooling2D())
    else:
        layers.append(L.Flatten())
m = fl.Sequential(layers)
for n in c.frozen:
    m.get_layer(n).trainable = False
m.compile(optimizer=fl.optimizers.SGD(0.01),
          loss=fl.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = arrays["x"], arrays["y"]
for _ in range(10):
    m.train_on_batch(x, y)
best = float("inf")
for _ in range({runs}):
    t = time.perf_counter()
    for _ in range({steps}):
        m.train_on_batch(x, y)
    best = min(best, (time.perf_counter() - t) / {steps} * 1e3)
print(best)
"""


def _one(root: str, name: str, runs: int) -> float:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _CHILD.format(root=os.path.abspath(root), here=here, name=name, runs=runs,
                         steps=_STEPS[name])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """Parse the arguments, run the rounds, print one row per scenario."""
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--scenarios", default="cnn-small,cnn-mnist,cnn-frozen")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=15)
    a = p.parse_args(argv)
    names = a.scenarios.split(",")
    for n in names:
        if n not in CNNS:
            p.error(f"unknown scenario {n!r}; choose from {', '.join(CNNS)}")
    got = {(n, w): [] for n in names for w in ("old", "new")}
    for _ in range(a.rounds):
        for n in names:
            for w, root in (("old", a.old), ("new", a.new)):
                got[n, w].append(_one(root, n, a.runs))
    print("| scenario | old ms/step | new ms/step | old / new |")
    print("|---|---:|---:|---:|")
    for n in names:
        o, w = got[n, "old"], got[n, "new"]
        print(f"| {n} | {min(o):.3f}-{max(o):.3f} | {min(w):.3f}-{max(w):.3f} | "
              f"{min(o) / min(w):.2f}x |")


if __name__ == "__main__":
    main()
