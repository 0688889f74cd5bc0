"""Fixtures for the training tests.

There is one engine: every model, whatever its graph, runs its compiled step program
on the one executor.  ``engine_path`` and ``expect_path`` remain so the tests that
were written for two paths keep their parameter; they now cover the one executor.
"""
import pytest


@pytest.fixture(params=["executor"])
def engine_path(request):
    return request.param


@pytest.fixture
def expect_path():
    def check(model):
        assert model._compiled is not None and model.step_program is not None
    return check
