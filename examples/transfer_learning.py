"""Transfer learning on scikit-learn's digits: train, save, reload, freeze, fine-tune.

1. Train a base network (with BatchNormalization) on the digits 0-4 and save it.
2. Load it back with ``fl.models.load_model`` -- as a new process would.
3. Freeze the base (``trainable=False``: its weights stay put and its
   BatchNormalization runs in inference mode, moving statistics untouched) and put
   a new head on it for the digits 5-9.
4. Fine-tune with ``EarlyStopping(restore_best_weights=True)`` and ``ModelCheckpoint``.
5. Draw the model (``plot_model(show_trainable=True)``) and the training curves.

The frozen base comes out bit-identical, and the held-out accuracy on 5-9 is printed.

Run: python examples/transfer_learning.py [output directory]
(needs scikit-learn; Graphviz's ``dot`` for the PNG of the graph, matplotlib for the
curves -- without them a ``.dot`` file is written / the curves are skipped.)
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numpy as np

import fastlayers as fl


def load_digits_split(seed: int = 0):
    """Digits scaled to [0, 1]; (train, validation, test) splits for 0-4 and for 5-9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    parts = {}
    for name, keep, offset in (("low", y < 5, 0), ("high", y >= 5, 5)):
        xs, ys = x[keep], y[keep] - offset
        x_tr, x_te, y_tr, y_te = train_test_split(xs, ys, test_size=0.25, random_state=seed,
                                                  stratify=ys)
        x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.2,
                                                  random_state=seed, stratify=y_tr)
        parts[name] = (x_tr, y_tr), (x_va, y_va), (x_te, y_te)
    return parts


def build_base() -> fl.Sequential:
    return fl.Sequential([
        fl.layers.Dense(128, activation="relu", input_shape=(64,), name="features_1"),
        fl.layers.BatchNormalization(name="features_bn"),
        fl.layers.Dense(128, activation="relu", name="features_2"),
    ], name="base")


def main(out_dir: str, verbose: int = 0) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    fl.utils.set_random_seed(0)
    parts = load_digits_split()
    (xl, yl), (xl_va, yl_va), (xl_te, yl_te) = parts["low"]
    (xh, yh), (xh_va, yh_va), (xh_te, yh_te) = parts["high"]

    # 1. The base, trained on 0-4 with its own head.
    base = build_base()
    first = fl.Sequential([base, fl.layers.Dense(5, activation="softmax", name="head_0_4")],
                          name="digits_0_4")
    first.compile(fl.optimizers.Adam(0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    first.fit(xl, yl, batch_size=32, epochs=10, validation_data=(xl_va, yl_va),
              verbose=verbose)
    _, acc_low = first.evaluate(xl_te, yl_te, verbose=0)
    path = os.path.join(out_dir, "digits_0_4.keras")
    first.save(path)

    # 2. Reloaded, as another process would get it.
    reloaded = fl.models.load_model(path)
    base = reloaded.get_layer("base")

    # 3. Freeze the base (BatchNormalization included) and add a head for 5-9.
    base.trainable = False
    inputs = fl.Input((64,), name="pixels")
    h = base(inputs)
    h = fl.layers.Dense(128, activation="relu", name="head_hidden")(h)
    outputs = fl.layers.Dense(5, activation="softmax", name="head_5_9")(h)
    model = fl.Model(inputs, outputs, name="digits_5_9")
    model.compile(fl.optimizers.Adam(0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    frozen_before = [w.copy() for w in base.get_weights()]  # moving statistics included

    graph = fl.utils.plot_model(model, to_file=os.path.join(out_dir, "transfer_model.png"),
                                show_shapes=True, show_trainable=True, expand_nested=True)

    # 4. Fine-tune the head only.
    callbacks = [
        fl.callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True),
        fl.callbacks.ModelCheckpoint(os.path.join(out_dir, "head-best.keras"),
                                     monitor="val_accuracy", save_best_only=True),
    ]
    history = model.fit(xh, yh, batch_size=32, epochs=60, validation_data=(xh_va, yh_va),
                        callbacks=callbacks, verbose=verbose)

    frozen_after = base.get_weights()
    identical = len(frozen_before) == len(frozen_after) and all(
        a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after))
    _, acc_high = model.evaluate(xh_te, yh_te, verbose=0)

    # 5. The curves (matplotlib is optional).
    curves = os.path.join(out_dir, "transfer_history.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        fl.utils.plot_history(history, to_file=curves)
    except ImportError:
        curves = None

    return {"accuracy_0_4": float(acc_low), "accuracy_5_9": float(acc_high),
            "base_identical": identical, "epochs": len(history.history["loss"]),
            "graph": graph, "curves": curves, "saved": path}


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fastlayers-tl-")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        r = main(out, verbose=2)
    print(f"RESULT base accuracy on held-out 0-4: {r['accuracy_0_4']:.3f}")
    print(f"RESULT frozen base bit-identical after fine-tuning: {r['base_identical']}")
    print(f"RESULT held-out accuracy on 5-9 (new head, frozen base): {r['accuracy_5_9']:.3f} "
          f"after {r['epochs']} epochs")
    print(f"RESULT files: {r['saved']}, {r['graph']}, {r['curves'] or '(no matplotlib)'}")
    if r["accuracy_5_9"] < 0.95 or not r["base_identical"]:
        sys.exit("transfer learning did not reach 95% with an unchanged base")
