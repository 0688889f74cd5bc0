"""ModelCheckpoint: filepath templates, save_best_only with mode and
initial_value_threshold, save_weights_only suffixes, save_freq in batches."""
import os

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import ModelCheckpoint


def run(cb, FakeModel, values, extra=None, monitor="val_loss"):
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_begin(epoch)
        logs = {monitor: v, "loss": 2.0 * v}
        logs.update(extra or {})
        cb.on_epoch_end(epoch, logs)
    cb.on_train_end()
    return model.saved


def test_template_filled_from_epoch_and_logs(tmp_path, FakeModel):
    path = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.3f}.keras")
    saved = run(ModelCheckpoint(path), FakeModel, [0.5, 0.25])
    assert saved == [("model", str(tmp_path / "ckpt-01-0.500.keras")),
                     ("model", str(tmp_path / "ckpt-02-0.250.keras"))]
    assert os.path.exists(tmp_path / "ckpt-02-0.250.keras")


def test_template_with_unknown_key(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m-{val_acc:.2f}.keras"))
    with pytest.raises(KeyError, match="Failed to format"):
        run(cb, FakeModel, [0.5])


def test_subdirectories_created(tmp_path, FakeModel):
    path = str(tmp_path / "a" / "b" / "m-{epoch}.keras")
    run(ModelCheckpoint(path), FakeModel, [1.0])
    assert os.path.exists(tmp_path / "a" / "b" / "m-1.keras")


def test_save_best_only_min(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), save_best_only=True)
    saved = run(cb, FakeModel, [1.0, 0.5, 0.7, 0.4, 0.4])
    assert [os.path.basename(p) for _, p in saved] == ["m-1.keras", "m-2.keras", "m-4.keras"]
    assert cb.best == 0.4


def test_save_best_only_max_auto(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="val_accuracy",
                         save_best_only=True)
    saved = run(cb, FakeModel, [0.5, 0.4, 0.9], monitor="val_accuracy")
    assert [os.path.basename(p) for _, p in saved] == ["m-1.keras", "m-3.keras"]


def test_initial_value_threshold(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), save_best_only=True,
                         initial_value_threshold=0.45)
    saved = run(cb, FakeModel, [1.0, 0.5, 0.4])
    assert [os.path.basename(p) for _, p in saved] == ["m-3.keras"]


def test_missing_monitor_saves_anyway_with_a_warning(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_auc", save_best_only=True)
    with pytest.warns(UserWarning, match="val_auc"):
        saved = run(cb, FakeModel, [1.0])
    assert len(saved) == 1


def test_weights_only_and_suffix_rules(tmp_path, FakeModel):
    saved = run(ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"), save_weights_only=True),
                FakeModel, [1.0])
    assert saved == [("weights", str(tmp_path / "w-1.weights.h5"))]
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        ModelCheckpoint(str(tmp_path / "w.keras"), save_weights_only=True)
    with pytest.raises(ValueError, match=r"\.keras"):
        ModelCheckpoint(str(tmp_path / "m.h5py"))
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="batch")


def test_save_freq_in_batches(tmp_path, FakeModel):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=3)
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    for epoch in range(2):
        cb.on_epoch_begin(epoch)
        for batch in range(4):
            cb.on_train_batch_end(batch, {"loss": 1.0})
        cb.on_epoch_end(epoch, {"loss": 1.0})
    names = [os.path.basename(p) for _, p in model.saved]
    # 8 batches seen in all: saves after the 3rd and 6th (epoch 2, batch 2).
    assert names == ["m-1-3.keras", "m-2-2.keras"]


def test_directory_as_filepath(tmp_path, FakeModel):
    d = tmp_path / "dir.keras"
    d.mkdir()
    with pytest.raises(IOError, match="non-directory"):
        run(ModelCheckpoint(str(d)), FakeModel, [1.0])


@pytest.mark.skipif(not hasattr(fl.Model, "save"), reason="model.save not merged yet")
def test_checkpoint_with_a_real_model(tmp_path):
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile("sgd", "mse")
    x = np.ones((8, 2), "float32")
    model.fit(x, np.zeros((8, 1), "float32"), epochs=2, verbose=0,
              callbacks=[ModelCheckpoint(str(tmp_path / "m-{epoch}-{loss:.4f}.keras"),
                                         monitor="loss")])
    assert len(list(tmp_path.glob("m-*.keras"))) == 2
