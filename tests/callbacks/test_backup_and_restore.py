"""BackupAndRestore: storage (atomic, pickle-free), restoring weights + optimizer
state + epoch, and a fit killed (SIGKILL) mid-epoch resuming to the same result."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import BackupAndRestore
from fastlayers.callbacks.backup_and_restore import optimizer_state, set_optimizer_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_model(opt="adam"):
    model = fl.Sequential([fl.layers.Dense(6, activation="relu", input_shape=(3,)),
                           fl.layers.BatchNormalization(), fl.layers.Dense(1)])
    model.compile(opt, "mse")
    return model


def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-1.0], [0.5]], "float32")).astype("float32")


def test_epoch_end_writes_one_npz_without_pickles(tmp_path):
    model = small_model()
    x, y = data()
    cb = BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    files = os.listdir(tmp_path / "b")
    assert files == ["latest.backup.npz"]  # no temporary file left behind
    with np.load(cb.backup_path, allow_pickle=False) as f:
        meta = json.loads(bytes(f["metadata"]).decode())
        assert meta["epoch"] == 2 and meta["n_weights"] == len(model.get_weights())
        for i, w in enumerate(model.get_weights()):
            np.testing.assert_array_equal(f[f"weight_{i}"], w)


def test_restore_sets_weights_optimizer_state_and_initial_epoch(tmp_path):
    x, y = data()
    fl.utils.set_random_seed(3)
    a = small_model()
    cb = BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    a.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[cb])
    fl.utils.set_random_seed(99)
    b = small_model()
    cb2 = BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    cb2.set_model(b)
    cb2.on_train_begin()
    assert b._initial_epoch == 3
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    sa = optimizer_state(a.optimizer, a.compiled_trainable_weights)
    sb = optimizer_state(b.optimizer, b.compiled_trainable_weights)
    assert len(sa) == len(sb) and int(sa[0]) == 15
    for u, v in zip(sa, sb):
        np.testing.assert_array_equal(u, v)
    # The next step is the same step.
    la = a.train_on_batch(x[:8], y[:8])
    lb = b.train_on_batch(x[:8], y[:8])
    assert la == lb
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_fallback_optimizer_state_checks_shapes():
    model = small_model(fl.optimizers.SGD(0.1, momentum=0.9))
    x, y = data()
    model.train_on_batch(x[:8], y[:8])
    ws = model.compiled_trainable_weights
    state = optimizer_state(model.optimizer, ws)
    with pytest.raises(ValueError, match="optimizer state for|set_state expects"):
        set_optimizer_state(model.optimizer, ws[:-1], state)


def test_training_end_deletes_the_backup(tmp_path):
    model = small_model()
    x, y = data()
    d = tmp_path / "b"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(str(d))])
    assert not d.exists()


def test_corrupt_backup_is_a_clear_error_and_leaves_the_model(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    (d / "latest.backup.npz").write_bytes(b"not a zip")
    model = small_model()
    before = model.get_weights()
    x, y = data()
    with pytest.raises(ValueError, match="cannot read the backup"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(str(d))])
    for u, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Empty"):
        BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("d", save_freq="batch")


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import fastlayers as fl

    backup, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fl.utils.set_random_seed(7)
    model = fl.Sequential([fl.layers.Dense(6, activation="relu", input_shape=(3,)),
                           fl.layers.BatchNormalization(), fl.layers.Dense(1)])
    model.compile(fl.optimizers.Adam(0.01), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-1.0], [0.5]], "float32")).astype("float32")
    state = {"epoch": None}

    def begin(epoch, logs):
        state["epoch"] = epoch
        with open(out + ".epochs", "a") as f:
            f.write(f"{epoch}\\n")

    def batch_end(batch, logs):
        if state["epoch"] == kill_at and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind

    cbs = [fl.callbacks.BackupAndRestore(backup),
           fl.callbacks.LambdaCallback(on_epoch_begin=begin, on_train_batch_end=batch_end)]
    model.fit(x, y, epochs=6, batch_size=8, verbose=0, callbacks=cbs)
    np.savez(out, *model.get_weights())
""")


def run_script(tmp_path, backup, out, kill_at):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # The fastlayers under test (installed, or the built checkout), not the source tree.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fl.__file__)))
    return subprocess.run([sys.executable, str(script), str(backup), str(out), str(kill_at)],
                          cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_fit_resumes_from_last_finished_epoch(tmp_path):
    ref = run_script(tmp_path, tmp_path / "ref_backup", tmp_path / "ref.npz", -1)
    assert ref.returncode == 0, ref.stderr
    killed = run_script(tmp_path, tmp_path / "backup", tmp_path / "run.npz", 3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert os.path.exists(tmp_path / "backup" / "latest.backup.npz")
    assert not os.path.exists(tmp_path / "run.npz")
    resumed = run_script(tmp_path, tmp_path / "backup", tmp_path / "run.npz", -1)
    assert resumed.returncode == 0, resumed.stderr
    epochs = (tmp_path / "run.npz.epochs").read_text().split()
    assert epochs == ["0", "1", "2", "3", "3", "4", "5"]  # epoch 3 redone, 0-2 not
    assert not os.path.exists(tmp_path / "backup")  # deleted after a finished fit
    with np.load(tmp_path / "ref.npz") as a, np.load(tmp_path / "run.npz") as b:
        assert len(a.files) == len(b.files) == 8
        for k in a.files:
            # Weights, Adam moments, step count and shuffling all resumed: bit-identical.
            np.testing.assert_array_equal(a[k], b[k])


def test_save_freq_in_batches_restarts_the_unfinished_epoch(tmp_path):
    model = small_model()
    x, y = data()  # 40 rows, batch 8: 5 batches per epoch
    cb = BackupAndRestore(str(tmp_path / "b"), save_freq=3, delete_checkpoint=False)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    with np.load(cb.backup_path, allow_pickle=False) as f:
        meta = json.loads(bytes(f["metadata"]).decode())
    # saves after batches 3, 6 (epoch 1, batch 1) and 9 (epoch 1, batch 4)
    assert (meta["epoch"], meta["batch"]) == (1, 4)
    other = small_model()
    cb2 = BackupAndRestore(str(tmp_path / "b"), save_freq=3, delete_checkpoint=False)
    cb2.set_model(other)
    cb2.on_train_begin()
    assert other._initial_epoch == 1


def test_double_checkpoint_falls_back_to_the_previous_backup(tmp_path):
    model = small_model()
    x, y = data()
    d = tmp_path / "b"
    cb = BackupAndRestore(str(d), double_checkpoint=True, delete_checkpoint=False)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(d)) == ["latest.backup.npz", "latest.backup.npz.bkp"]
    (d / "latest.backup.npz").write_bytes(b"damaged")
    other = small_model()
    cb2 = BackupAndRestore(str(d), double_checkpoint=True, delete_checkpoint=False)
    cb2.set_model(other)
    cb2.on_train_begin()
    assert other._initial_epoch == 2  # the backup before the last
