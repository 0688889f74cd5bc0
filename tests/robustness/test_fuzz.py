"""Property-based fuzz of random models and random public-API calls (issue 10's contract).

The hypothesis run lives in ``_fuzz_body.py`` and runs in a child process: a segfault
or a hang fails this test with hypothesis's falsifying example, not the whole suite.
"""
import os

import pytest

pytest.importorskip("hypothesis")

BODY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fuzz_body.py")


def test_random_models_and_calls_keep_the_contract(run_snippet):
    r = run_snippet(f"import runpy; runpy.run_path({BODY!r}, run_name='__main__')", timeout=120)
    assert "FUZZ-OK" in r.stdout
