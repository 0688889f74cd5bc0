"""The integer codes are defined once per side of the Python/Cython line, and agree."""
import pathlib
import re

from fastlayers import _codes

CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"


def _enums(path):
    text = path.read_text()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\s+([A-Z][A-Z0-9_]*)\s*=\s*(\d+)\s*(?:#.*)?$", text, re.M)}


def test_codes_pxd_matches_codes_py():
    pxd = _enums(CSRC / "_codes.pxd")
    assert pxd, "no enums parsed"
    for name, value in pxd.items():
        assert getattr(_codes, name) == value, name


def test_activation_codes_match_the_kernels():
    act = {k: v for k, v in _enums(CSRC / "_act.pxd").items() if k.startswith("ACT_")
           and k != "ACT_COUNT"}
    assert act
    for name, value in act.items():
        assert getattr(_codes, name) == value, name
    assert set(_codes.ACTIVATIONS.values()) == set(act.values())


def test_epsilon_is_one_constant():
    text = (CSRC / "_codes.pxd").read_text()
    assert float(re.search(r"return\s+([0-9.e-]+)", text).group(1)) == _codes.EPSILON
    import fastlayers as fl
    from fastlayers._kernels import losses

    assert fl.backend.epsilon() == losses.EPSILON == _codes.EPSILON
