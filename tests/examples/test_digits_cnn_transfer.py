"""examples/digits_cnn_transfer.py runs as a user runs it (subprocess, from a temporary
directory): the frozen CNN base comes out bit-identical and the new head reaches 97%
held-out accuracy on the digits 5-9."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "examples" / "digits_cnn_transfer.py"


def example_env():
    """A user's environment; PYTHONPATH is the checkout only when the fastlayers under
    test is the checkout's in-place build (as in tests/seeds/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    origin = Path(importlib.util.find_spec("fastlayers").origin).resolve()
    if REPO_ROOT in origin.parents:
        env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_digits_cnn_transfer(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out")], cwd=tmp_path,
                          env=example_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "RESULT frozen base bit-identical after training the head: True (12 arrays)" in out
    acc = float(re.search(r"RESULT held-out accuracy on 5-9 \(new head, frozen base\): "
                          r"([\d.]+)", out).group(1))
    assert acc >= 0.97, out
    base = float(re.search(r"RESULT base accuracy on held-out 0-4: ([\d.]+)", out).group(1))
    assert base >= 0.95, out  # the base's BatchNormalization statistics serve inference
    assert (tmp_path / "out" / "digits_cnn_0_4.keras").is_file()
