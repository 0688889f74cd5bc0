"""Helpers for the seed tests: run an example as a user would, or import it.

``run_example`` runs ``examples/<name>.py`` in a subprocess with ``sys.executable``
from a fresh temporary directory.  When the fastlayers under test is the repo
checkout (not an installed package), ``PYTHONPATH`` is set to the repo root and
nothing else; when it is installed, the environment is left without ``PYTHONPATH``.
"""
import ast
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
TIME_LIMIT = 10.0  # seconds per example run (the requirement)


def example_env():
    """The environment of a user running an example (see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    spec = importlib.util.find_spec("fastlayers")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastlayers is not importable by the test process")
    origin = Path(spec.origin).resolve()
    if REPO_ROOT in origin.parents:
        # Importable from the repo root (in-place build), maybe not installed:
        # run the examples against this same copy.
        env["PYTHONPATH"] = str(REPO_ROOT)
    env.setdefault("PYTHONWARNINGS", "default")
    return env


class ExampleRun:
    def __init__(self, proc, elapsed):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed

    @classmethod
    def from_text(cls, stdout, stderr=""):
        """The same parsing helpers over output captured in-process."""
        return cls(subprocess.CompletedProcess([], 0, stdout, stderr), 0.0)

    def results(self):
        """The lines ``RESULT ...`` (without the prefix), in order."""
        return [line[len("RESULT "):] for line in self.stdout.splitlines()
                if line.startswith("RESULT ")]

    def result(self, prefix):
        """The one RESULT line starting with ``prefix``."""
        found = [r for r in self.results() if r.startswith(prefix)]
        assert len(found) == 1, (prefix, self.results())
        return found[0]

    @staticmethod
    def field(line, key, next_key=None):
        return field(line, key, next_key)


def field(line, key, next_key=None):
    """The value of ``key=`` in a RESULT line, up to `` next_key=`` (or the end),
    parsed as a Python literal when it is one."""
    pat = re.escape(key) + r"=(.*?)" + (r" " + re.escape(next_key) + "=" if next_key else r"$")
    m = re.search(pat, line)
    assert m, (key, line)
    text = m.group(1).strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# Every run the tests ask for, started together (a few at a time) on first use:
# each takes about a second, mostly interpreter and import start-up.
PLANNED_RUNS = [
    ("seed000_shared_layer",), ("seed002_dropout_frozen",), ("seed003_containers",),
    ("seed004_training_vs_trainable",), ("autoscale_dropout",),
]


def _run(key, cwd):
    name, *args = key
    script = EXAMPLES / f"{name}.py"
    assert script.is_file(), script
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=example_env(),
                          capture_output=True, text=True, timeout=120)
    return ExampleRun(proc, time.perf_counter() - t0)


@pytest.fixture(scope="session")
def _planned_runs(tmp_path_factory):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(_run, key, tmp_path_factory.mktemp("example_cwd"))
                   for key in PLANNED_RUNS}
        return {key: f.result() for key, f in futures.items()}


@pytest.fixture
def run_example(request, tmp_path):
    """``run_example(name, *args)``: the finished run of ``examples/<name>.py``, run from
    a fresh temporary directory; checks the exit status and the 10 s limit."""
    def run(name, *args, expect_ok=True):
        key = (name, *args)
        if key in PLANNED_RUNS:
            run_ = request.getfixturevalue("_planned_runs")[key]
        else:
            run_ = _run(key, tmp_path)
        if expect_ok:
            assert run_.returncode == 0, f"{name} failed:\n{run_.stdout}\n{run_.stderr}"
        assert run_.elapsed < TIME_LIMIT, f"{name} took {run_.elapsed:.1f} s"
        return run_

    run.parse = ExampleRun.from_text
    return run


@pytest.fixture
def load_example(monkeypatch):
    """Import ``examples/<name>.py`` by path, as its own script directory would allow."""
    def load(name):
        monkeypatch.syspath_prepend(str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(f"fl_example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
