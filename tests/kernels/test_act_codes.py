"""The activation code table exists once per side of the Python/Cython line; they agree."""
import re
from pathlib import Path

import numpy as np
import pytest

from fastlayers import _act_codes, ops
from fastlayers._kernels import activations, dense

PXD = Path(__file__).resolve().parents[2] / "csrc" / "_act.pxd"


def _pxd_enum():
    text = PXD.read_text()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\s+ACT_([A-Z0-9_]+)\s*=\s*(\d+)", text, re.M)}


def test_python_table_matches_the_pxd_enum():
    enum = _pxd_enum()
    assert enum.pop("COUNT") == _act_codes.COUNT == activations.COUNT
    assert enum == _act_codes.ENUM_NAMES
    for name, code in _act_codes.ACTIVATION_CODES.items():
        key = "SILU" if name == "swish" else name.upper()
        assert enum[key] == code, name
    assert sorted(set(_act_codes.ACTIVATION_CODES.values())) == list(range(_act_codes.COUNT))


def test_first_five_codes_are_unchanged():
    assert [_act_codes.ACTIVATION_CODES[n] for n in
            ("linear", "relu", "sigmoid", "tanh", "softmax")] == [0, 1, 2, 3, 4]
    assert (dense.LINEAR, dense.RELU, dense.SIGMOID, dense.TANH, dense.SOFTMAX) == (0, 1, 2, 3, 4)


def test_needs_input_agrees_with_the_kernel():
    for name, code in _act_codes.ACTIVATION_CODES.items():
        assert activations.needs_input(code) == (name in _act_codes.NEEDS_INPUT), name
        assert ops.activation_needs_input(name) == (name in _act_codes.NEEDS_INPUT)


@pytest.mark.parametrize("name", sorted(_act_codes.NEEDS_INPUT))
def test_input_based_grads_are_rejected_without_the_input(name):
    x = np.ones((2, 3))
    y = ops.activation_forward(x, name)
    with pytest.raises(ValueError, match="X .the forward input. is required"):
        ops.activation_backward(y, x, name)
    with pytest.raises(ValueError, match="Z .the pre-activation. is required"):
        ops.dense_backward(x, np.eye(3), y, x, name)


def test_fixed_constants_match_the_pxd():
    text = PXD.read_text()
    defines = {m.group(1): float(m.group(2))
               for m in re.finditer(r"#define FL_([A-Z_0-9]+) ([0-9.]+)", text)}
    assert defines["LEAKY_SLOPE"] == _act_codes.LEAKY_RELU_SLOPE
    assert defines["SELU_ALPHA"] == _act_codes.SELU_ALPHA
    assert defines["SELU_SCALE"] == _act_codes.SELU_SCALE
