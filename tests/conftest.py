"""Shared fixtures: a clean seed and float type per test."""
import pytest

import fastlayers as fl


@pytest.fixture(autouse=True)
def _clean_state():
    fl.backend.clear_session()
    fl.utils.set_random_seed(1234)
    fl.backend.set_floatx("float32")
    fl.backend.set_learning_phase(None)
    yield
    fl.backend.set_floatx("float32")
    fl.backend.set_learning_phase(None)


@pytest.fixture
def float64():
    fl.backend.set_floatx("float64")
    yield
    fl.backend.set_floatx("float32")
