"""Fixtures for the training tests: run on both engine paths.

A chain of Dense/Dropout/Activation/Flatten layers trained with a built-in loss and
SGD or Adam runs on the fused training step (engine/plan.py); everything else, and
every model when ``FASTLAYERS_NO_PLAN=1``, runs layer by layer.  Tests that take the
``engine_path`` fixture run once on each, and ``expect_path(model)`` checks that a
compiled chain model really took the path the test meant to cover.
"""
import pytest


@pytest.fixture(params=["fused", "layers"])
def engine_path(request, monkeypatch):
    monkeypatch.setenv("FASTLAYERS_NO_PLAN", "0" if request.param == "fused" else "1")
    return request.param


@pytest.fixture
def expect_path(engine_path):
    def check(model):
        compiled = getattr(model, "_compiled", None)
        if compiled is None or not hasattr(compiled, "plan"):
            return  # the engine has no fused path (any more): nothing to check
        assert (compiled.plan is not None) == (engine_path == "fused"), (
            f"model {model.name!r} was expected on the {engine_path} path")
    return check
