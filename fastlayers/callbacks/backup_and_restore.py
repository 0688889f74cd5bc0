"""``BackupAndRestore``: resume an interrupted ``fit`` from the last finished epoch.

The backup is one ``.npz`` file (weights, optimizer state and a JSON record of the
epoch, written with ``np.savez`` and read with ``allow_pickle=False``), written to a
temporary name and renamed into place, so a kill at any moment leaves either the
previous backup or the new one, never a torn file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import List, Union

import numpy as np

from .callback import Callback

_FORMAT = "fastlayers.backup/1"
_FILE = "latest.backup.npz"


def _opt_weights(model) -> list:
    """The weights whose optimizer state is kept: the compiled set when there is one."""
    ws = getattr(model, "compiled_trainable_weights", None)
    return list(ws) if ws else list(model.trainable_weights)


def optimizer_state(optimizer, weights) -> List[np.ndarray]:
    """The optimizer's state for ``weights`` as a flat list of arrays.

    Uses ``optimizer.get_state(weights)`` when the optimizer has it; otherwise the
    step count followed by every weight's slots (velocities, moments) in order.
    """
    if hasattr(optimizer, "get_state"):
        return [np.asarray(a) for a in optimizer.get_state(weights)]
    slots = getattr(optimizer, "_slots", {})
    out = [np.asarray(int(getattr(optimizer, "iterations", 0)), dtype=np.int64)]
    # One count per weight, then the arrays, so set_state knows how to split them.
    counts = [len(slots.get(id(w), ())) for w in weights]
    out.append(np.asarray(counts, dtype=np.int64))
    for w in weights:
        out.extend(np.array(s) for s in slots.get(id(w), ()))
    return out


def set_optimizer_state(optimizer, weights, arrays: List[np.ndarray]) -> None:
    """Inverse of :func:`optimizer_state` (in place, so kernels holding slots see it)."""
    if hasattr(optimizer, "set_state"):
        optimizer.set_state(weights, arrays)
        return
    if len(arrays) < 2:
        raise ValueError("BackupAndRestore: optimizer state in the backup is incomplete")
    counts = [int(c) for c in np.asarray(arrays[1]).reshape(-1)]
    if len(counts) != len(weights) or sum(counts) != len(arrays) - 2:
        raise ValueError(f"BackupAndRestore: the backup holds optimizer state for "
                         f"{len(counts)} weights, the model has {len(weights)}")
    pos = 2
    for w, n in zip(weights, counts):
        values = arrays[pos:pos + n]
        pos += n
        if n == 0:
            continue
        slot = optimizer._slot(w, n)
        for dst, src in zip(slot, values):
            if dst.shape != src.shape:
                raise ValueError(f"BackupAndRestore: optimizer slot of {w.path} has shape "
                                 f"{src.shape} in the backup, {dst.shape} in the model")
            np.copyto(dst, src, casting="unsafe")
    optimizer.iterations = int(arrays[0])


class BackupAndRestore(Callback):
    """Keras's ``BackupAndRestore``.

    At the end of every epoch (or every ``save_freq`` batches) the weights, the
    optimizer state and the epoch count are written to ``backup_dir``.  When
    ``fit`` starts with a backup present, they are restored and
    ``model._initial_epoch`` is set so ``fit`` continues with the first epoch not
    finished.  When training ends normally the backup is deleted
    (``delete_checkpoint=True``).  ``double_checkpoint=True`` keeps the previous
    backup too (``.bkp``), used when the latest cannot be read.  ``fit`` must read
    ``model._initial_epoch`` after ``on_train_begin``.
    """

    def __init__(self, backup_dir, save_freq: Union[str, int] = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: "
                             f"save_freq={save_freq!r}. Expected either 'epoch' or a positive "
                             f"integer value.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.double_checkpoint = bool(double_checkpoint)
        self._path = os.path.join(self.backup_dir, _FILE)
        self._prev_path = self._path + ".bkp"
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self.model._initial_epoch = None
        self._current_epoch = 0
        if os.path.exists(self._path):
            try:
                epoch = self._restore(self._path)
            except ValueError:
                if not os.path.exists(self._prev_path):
                    raise
                epoch = self._restore(self._prev_path)
            self.model._initial_epoch = epoch
            self._current_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch
        self._last_batch_seen = -1

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        add = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._last_batch_seen = batch
        self._batches_seen_since_last_saving += add
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            # Mid-epoch: resuming restarts this epoch from these weights (as Keras).
            self._save(self._current_epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    # ------------------------------------------------------------------ storage
    def _save(self, epoch: int, batch: int) -> None:
        model = self.model
        weights = model.get_weights()
        arrays = {f"weight_{i}": np.asarray(w) for i, w in enumerate(weights)}
        opt = getattr(model, "optimizer", None)
        n_opt = 0
        if opt is not None:
            state = optimizer_state(opt, _opt_weights(model))
            n_opt = len(state)
            arrays.update((f"optimizer_{i}", a) for i, a in enumerate(state))
        from ..utils import random as _random

        meta = {"format": _FORMAT, "epoch": int(epoch), "batch": int(batch),
                "n_weights": len(weights), "n_optimizer": n_opt,
                "rng": _random.generator().bit_generator.state}
        arrays["metadata"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        os.makedirs(self.backup_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.backup_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            if self.double_checkpoint and os.path.exists(self._path):
                # Copied, then renamed: a kill here leaves the latest backup in place.
                shutil.copyfile(self._path, tmp + ".prev")
                os.replace(tmp + ".prev", self._prev_path)
            os.replace(tmp, self._path)
        except BaseException:
            for leftover in (tmp, tmp + ".prev"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
            raise

    def _restore(self, path: str) -> int:
        model = self.model
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["metadata"]).decode("utf-8"))
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"unknown format {meta.get('format')!r}")
                weights = [data[f"weight_{i}"] for i in range(meta["n_weights"])]
                state = [data[f"optimizer_{i}"] for i in range(meta["n_optimizer"])]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"BackupAndRestore: cannot read the backup {path!r}: {exc}. "
                             f"Delete it to start training afresh.") from None
        before = model.get_weights()
        model.set_weights(weights)
        opt = getattr(model, "optimizer", None)
        if opt is not None and state:
            try:
                set_optimizer_state(opt, _opt_weights(model), state)
            except Exception:
                model.set_weights(before)
                raise
        rng = meta.get("rng")
        if rng is not None:
            from ..utils import random as _random

            try:
                _random.generator().bit_generator.state = rng
            except (TypeError, ValueError, KeyError):
                pass  # another bit generator: resuming only changes the shuffling
        return int(meta["epoch"])

    @property
    def backup_path(self) -> str:
        """The file the backup is written to."""
        return self._path
