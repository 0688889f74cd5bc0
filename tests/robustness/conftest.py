"""Fixtures for the robustness tests: ``run_snippet`` runs code in a fresh interpreter so
that a crash or a hang fails one test, not the suite."""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import fastlayers

# The child imports the fastlayers this process tests (an in-place build under
# ``python -m pytest``, the installed one in CI), and runs outside the source tree.
_TESTED = os.path.dirname(os.path.dirname(os.path.abspath(fastlayers.__file__)))


def _run_snippet(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -c`` (the tested fastlayers first on sys.path); fail
    with its output if it crashes, hangs or exits non-zero."""
    env = dict(os.environ, PYTHONPATH=_TESTED + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        with tempfile.TemporaryDirectory() as cwd:
            r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"snippet hung (> {timeout} s):\n{e.stdout}\n{e.stderr}") from None
    assert r.returncode == 0, (f"snippet exited with {r.returncode}:\n"
                               f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
    return r


@pytest.fixture
def run_snippet():
    return _run_snippet
