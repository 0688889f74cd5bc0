"""Convolutional transfer learning on scikit-learn's 8x8 digits.

1. Train a CNN base (Conv2D -> BatchNormalization -> ReLU -> MaxPooling2D, twice;
   channels_last, input (8, 8, 1)) with its own head on the digits 0-4 and save it.
2. Load it back with ``fl.models.load_model`` -- as a new process would.
3. Freeze the base (``trainable=False``: its kernels stay put and its
   BatchNormalization runs in inference mode, moving statistics untouched), put a new
   head on it for the digits 5-9 and train only that head.
4. Check that every array of the base (moving statistics included) is bit-identical
   after training, and print the held-out accuracy on 5-9.

Run: python examples/digits_cnn_transfer.py [output directory]   (needs scikit-learn)
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import fastlayers as fl


def load_digits_split(seed: int = 0):
    """Digits as (n, 8, 8, 1) images in [0, 1]; (train, test) splits for 0-4 and 5-9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target
    parts = {}
    for name, keep, offset in (("low", y < 5, 0), ("high", y >= 5, 5)):
        x_tr, x_te, y_tr, y_te = train_test_split(x[keep], y[keep] - offset, test_size=0.25,
                                                  random_state=seed, stratify=y[keep])
        parts[name] = (x_tr, y_tr), (x_te, y_te)
    return parts


def build_base() -> fl.Sequential:
    """Two Conv2D -> BatchNormalization -> ReLU -> MaxPooling2D blocks, then Flatten."""
    L = fl.layers
    # momentum=0.9: the moving statistics of a small conv net's activations (variance ~0.01)
    # must forget their initial 1.0 within a few hundred steps, or inference mode is far off.
    return fl.Sequential([
        fl.Input((8, 8, 1), name="image"),
        L.Conv2D(16, 3, padding="same", name="conv_1"),
        L.BatchNormalization(momentum=0.9, name="bn_1"),
        L.ReLU(name="relu_1"),
        L.MaxPooling2D(name="pool_1"),           # 4x4x16
        L.Conv2D(32, 3, padding="same", name="conv_2"),
        L.BatchNormalization(momentum=0.9, name="bn_2"),
        L.ReLU(name="relu_2"),
        L.MaxPooling2D(name="pool_2"),           # 2x2x32
        L.Flatten(name="flatten"),
    ], name="cnn_base")


def main(out_dir: str, verbose: int = 0) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    fl.utils.set_random_seed(0)
    (xl, yl), (xl_te, yl_te) = load_digits_split()["low"]
    (xh, yh), (xh_te, yh_te) = load_digits_split()["high"]

    # 1. The base, trained on 0-4 with its own head, then saved.
    first = fl.Sequential([build_base(), fl.layers.Dense(5, activation="softmax", name="head_0_4")],
                          name="digits_0_4")
    first.compile(fl.optimizers.Adam(0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    first.fit(xl, yl, batch_size=32, epochs=8, verbose=verbose)
    _, acc_low = first.evaluate(xl_te, yl_te, verbose=0)
    path = os.path.join(out_dir, "digits_cnn_0_4.keras")
    first.save(path)

    # 2. Reloaded, as another process would get it.
    base = fl.models.load_model(path).get_layer("cnn_base")

    # 3. Freeze the base (its BatchNormalization runs in inference mode) and add a head.
    base.trainable = False
    inputs = fl.Input((8, 8, 1), name="pixels")
    h = base(inputs)
    h = fl.layers.Dense(128, activation="relu", name="head_hidden")(h)
    outputs = fl.layers.Dense(5, activation="softmax", name="head_5_9")(h)
    model = fl.Model(inputs, outputs, name="digits_5_9")
    model.compile(fl.optimizers.Adam(0.002), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = {w.path: w.numpy().copy() for w in base.weights}  # moving statistics included
    model.fit(xh, yh, batch_size=32, epochs=30, verbose=verbose)

    # 4. The base did not move, to the bit; the head learnt 5-9.
    after = {w.path: w.numpy() for w in base.weights}
    assert sorted(before) == sorted(after) and len(before) == 12, sorted(before)
    changed = [k for k in before if before[k].dtype != after[k].dtype
               or before[k].tobytes() != after[k].tobytes()]
    assert not changed, f"the frozen base changed: {changed}"
    _, acc_high = model.evaluate(xh_te, yh_te, verbose=0)
    return {"accuracy_0_4": float(acc_low), "accuracy_5_9": float(acc_high),
            "base_arrays": len(before), "base_identical": not changed, "saved": path}


if __name__ == "__main__":
    fl.backend.set_num_threads(1)  # tiny products: a parallel team only adds overhead here
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fastlayers-cnn-")
    r = main(out, verbose=0)
    print(f"RESULT base accuracy on held-out 0-4: {r['accuracy_0_4']:.4f}")
    print(f"RESULT frozen base bit-identical after training the head: {r['base_identical']} "
          f"({r['base_arrays']} arrays)")
    print(f"RESULT held-out accuracy on 5-9 (new head, frozen base): {r['accuracy_5_9']:.4f}")
    print(f"RESULT saved: {r['saved']}")
