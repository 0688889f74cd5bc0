"""Interrupted saves keep the old file; bad files are refused and change nothing."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.saving import files

from .conftest import build


class Boom(Exception):
    pass


def big_model():
    # Several write chunks, so the fault can hit the first, a middle and the last one.
    m = fl.Sequential([fl.layers.Dense(300, input_shape=(200,)), fl.layers.Dense(4)])
    m.compile(fl.optimizers.Adam(), "mse")
    m.train_on_batch(np.ones((2, 200)), np.ones((2, 4)))
    return m


def chunks_of(path):
    return -(-os.path.getsize(path) // files.CHUNK_BYTES)


@pytest.mark.parametrize("target", ["save", "save_weights"])
def test_failure_at_every_write_leaves_previous_file(target, tmp_path, monkeypatch):
    model = big_model()
    path = tmp_path / ("m.keras" if target == "save" else "m.weights.npz")
    getattr(model, target)(path)
    old = path.read_bytes()
    model.layers[0].kernel.value[...] += 1.0  # the next save would differ
    n = chunks_of(path)
    assert n >= 3
    real = files.write_bytes
    for fail_at in range(n):
        calls = []

        def faulty(f, data, fail_at=fail_at):
            calls.append(1)
            if len(calls) - 1 == fail_at:
                raise Boom(f"disk full at write {fail_at}")
            real(f, data)

        monkeypatch.setattr(files, "write_bytes", faulty)
        with pytest.raises(Boom):
            getattr(model, target)(path)
        assert path.read_bytes() == old
        assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left behind
    monkeypatch.setattr(files, "write_bytes", real)
    getattr(model, target)(path)
    assert path.read_bytes() != old


@pytest.mark.parametrize("step", ["fsync", "replace", "interrupt"])
def test_failure_at_fsync_rename_or_ctrl_c(step, tmp_path, monkeypatch):
    model = build("sequential")[0]
    path = tmp_path / "m.keras"
    model.save(path)
    old = path.read_bytes()
    model.layers[0].kernel.value[...] += 1.0

    def fail(*a, **k):
        raise KeyboardInterrupt if step == "interrupt" else OSError("injected")

    if step == "fsync":
        monkeypatch.setattr(files.os, "fsync", fail)
    elif step == "replace":
        monkeypatch.setattr(files.os, "replace", fail)
    else:
        monkeypatch.setattr(files, "write_bytes", fail)
    with pytest.raises((OSError, KeyboardInterrupt)):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.keras"]
    fl.models.load_model(path)


def test_failure_while_serializing_writes_nothing(tmp_path):
    class Unsaveable(fl.layers.Layer):
        def call(self, x, training=None):
            return x

        def get_config(self):
            return {"name": self.name, "fn": object()}

    x = fl.Input((2,))
    m = fl.Model(x, Unsaveable()(x))
    with pytest.raises(TypeError):
        m.save(tmp_path / "m.keras")
    assert os.listdir(tmp_path) == []


def snapshot(model):
    return [w.numpy() for w in model.weights], model.optimizer.get_state(model._compiled.weights)


def assert_untouched(model, snap):
    ws, opt = snap
    for a, w in zip(ws, model.weights):
        np.testing.assert_array_equal(a, w.value)
    for a, b in zip(opt, model.optimizer.get_state(model._compiled.weights)):
        np.testing.assert_array_equal(a, b)


def rezip(src, dst, replace=None, add=()):
    """Copy the archive ``src`` to ``dst`` replacing some entries and adding others."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
        for name, data in add:
            zout.writestr(name, data)


@pytest.mark.parametrize("cut", [0, 10, 100, "half", -30])
def test_truncated_files_are_refused(cut, tmp_path):
    model, x, y = build("sequential")
    good = tmp_path / "good.keras"
    model.save(good)
    model.save_weights(tmp_path / "good.weights.npz")
    for src in (good, tmp_path / "good.weights.npz"):
        data = src.read_bytes()
        n = len(data) // 2 if cut == "half" else (cut if cut >= 0 else len(data) + cut)
        bad = tmp_path / ("bad" + "".join(src.suffixes))
        bad.write_bytes(data[:n])
        snap = snapshot(model)
        with pytest.raises(ValueError, match="bad"):
            model.load_weights(bad)
        assert_untouched(model, snap)
        if src.suffix == ".keras":
            with pytest.raises(ValueError, match="bad.keras"):
                fl.models.load_model(bad)


def test_corrupt_bytes_are_refused(tmp_path):
    model = build("sequential")[0]
    good = tmp_path / "good.keras"
    model.save(good)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("model.weights.npz")
    mid = info.header_offset + 60 + info.compress_size // 2
    data[mid:mid + 8] = bytes(8) if any(data[mid:mid + 8]) else b"\xff" * 8
    bad = tmp_path / "bad.keras"
    bad.write_bytes(bytes(data))
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"bad\.keras.*model\.weights\.npz"):
        model.load_weights(bad)
    assert_untouched(model, snap)
    with pytest.raises(ValueError, match=r"bad\.keras"):
        fl.models.load_model(bad)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil",
                                  "assets\\..\\evil"])
def test_hostile_entry_names_are_refused(name, tmp_path):
    model = build("sequential")[0]
    model.save(tmp_path / "good.keras")
    bad = tmp_path / "sub" / "bad.keras"
    bad.parent.mkdir()
    rezip(tmp_path / "good.keras", bad, add=[(name, b"owned")])
    with zipfile.ZipFile(bad) as zf:
        assert name.replace("\\", "/") in [i.filename.replace("\\", "/") for i in zf.infolist()] \
            or name.lstrip("/") in zf.namelist()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="refusing zip entry"):
        fl.models.load_model(bad)
    with pytest.raises(ValueError, match="refusing zip entry"):
        model.load_weights(bad)
    assert_untouched(model, snap)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil").exists()


class _Evil:
    """Unpickling this would create a file: the test checks it never happens."""

    marker = None

    def __reduce__(self):
        return (open, (_Evil.marker, "w"))


def test_pickle_inside_a_file_is_never_executed(tmp_path):
    model = build("sequential")[0]
    good = tmp_path / "good.keras"
    model.save(good)
    _Evil.marker = str(tmp_path / "PWNED")
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as zf, np.load(io.BytesIO(zf.read("model.weights.npz"))) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["layers/dense/vars/0"] = np.array([_Evil()], dtype=object)
    np.savez(buf, **arrays)  # np.savez pickles object arrays
    evil_npz = buf.getvalue()
    rezip(good, tmp_path / "bad.keras", replace={"model.weights.npz": evil_npz})
    (tmp_path / "bad.weights.npz").write_bytes(evil_npz)
    snap = snapshot(model)
    with pytest.raises(ValueError, match="never unpickled"):
        fl.models.load_model(tmp_path / "bad.keras")
    for bad in ("bad.keras", "bad.weights.npz"):
        with pytest.raises(ValueError, match="layers/dense/vars/0.*never unpickled"):
            model.load_weights(tmp_path / bad)
    assert_untouched(model, snap)
    assert not os.path.exists(_Evil.marker)
    # The unpickling would indeed have run: the trap is real.
    with np.load(io.BytesIO(evil_npz), allow_pickle=True) as npz:
        npz["layers/dense/vars/0"]
    assert os.path.exists(_Evil.marker)


def test_wrong_shape_or_dtype_weight_is_refused(tmp_path):
    model = build("sequential")[0]
    good = tmp_path / "good.keras"
    model.save(good)
    with zipfile.ZipFile(good) as zf, np.load(io.BytesIO(zf.read("model.weights.npz"))) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value, msg in [
            ("layers/dense/vars/1", np.zeros(99, np.float32), "shape"),
            ("layers/dense/vars/1", arrays["layers/dense/vars/1"].astype(np.float64), "dtype"),
            ("layers/nonexistent/vars/0", np.zeros(3, np.float32), "match no weight")]:
        changed = dict(arrays)
        changed[key] = value
        buf = io.BytesIO()
        np.savez(buf, **changed)
        rezip(good, tmp_path / "bad.keras", replace={"model.weights.npz": buf.getvalue()})
        snap = snapshot(model)
        with pytest.raises(ValueError, match=f"bad.keras.*{msg}") as err:
            model.load_weights(tmp_path / "bad.keras")
        assert "model.weights.npz" in str(err.value)
        assert_untouched(model, snap)
        with pytest.raises(ValueError, match=msg):
            fl.models.load_model(tmp_path / "bad.keras")
    missing = {k: v for k, v in arrays.items() if k != "layers/dense_1/vars/0"}
    buf = io.BytesIO()
    np.savez(buf, **missing)
    rezip(good, tmp_path / "bad.keras", replace={"model.weights.npz": buf.getvalue()})
    with pytest.raises(ValueError, match="layers/dense_1/vars/0' is missing"):
        fl.models.load_model(tmp_path / "bad.keras")


def test_bad_configs_are_refused(tmp_path):
    model = build("sequential")[0]
    good = tmp_path / "good.keras"
    model.save(good)
    with zipfile.ZipFile(good) as zf:
        cfg = json.loads(zf.read("config.json"))
    cfg["config"]["layers"][1]["class_name"] = "Conv9D"
    rezip(good, tmp_path / "a.keras", replace={"config.json": json.dumps(cfg)})
    with pytest.raises(ValueError, match=r"a\.keras.*config\.json.*unknown layer class 'Conv9D'"):
        fl.models.load_model(tmp_path / "a.keras")
    rezip(good, tmp_path / "b.keras", replace={"config.json": b"{not json"})
    with pytest.raises(ValueError, match=r"b\.keras.*config\.json.*not valid JSON"):
        fl.models.load_model(tmp_path / "b.keras")
    with zipfile.ZipFile(tmp_path / "c.keras", "w") as zf:
        zf.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="'config.json' is missing"):
        fl.models.load_model(tmp_path / "c.keras")
    (tmp_path / "d.keras").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="not a valid .keras"):
        fl.models.load_model(tmp_path / "d.keras")
    cfg["config"]["layers"][1]["class_name"] = "Dense"
    cfg["config"]["layers"][1]["config"]["units"] = -3
    rezip(good, tmp_path / "e.keras", replace={"config.json": json.dumps(cfg)})
    with pytest.raises(ValueError, match="units must be a positive integer"):
        fl.models.load_model(tmp_path / "e.keras")
