"""Seed 004: ``training`` (a call argument) vs ``trainable`` (a layer attribute).

Four parts, each printing ``RESULT ...`` lines:

1. ``Dropout(0.5)(x, training=True)`` applies dropout at training time *and* inference
   time: the pinned ``training=True`` survives ``predict``.
2. Freezing a pretrained base inside a ``Sequential`` (a small stand-in for
   ``ResNet50Base``): its ``trainable_weights`` is ``[]``, the model has just the
   Dense layer's kernel and bias to train, and ``fit`` leaves the base unchanged.
3. ``AutoScaleDropout`` (examples/autoscale_dropout.py): a dropout whose scale is
   learned.  Trainable, ``fit`` learns the scale; frozen, the scale stays but dropout
   still applies under ``training=True``.
4. ``BatchNormalization`` with ``bn.trainable = False`` runs in inference mode even
   under training: ``fit`` uses and keeps its moving statistics.

``python seed004_training_vs_trainable.py``
"""
import warnings

import numpy as np

import fastlayers as fl
from fastlayers.layers import BatchNormalization, Dense, Dropout, Flatten
from fastlayers.models import Input, Model, Sequential

from autoscale_dropout import AutoScaleDropout


# --------------------------------------------------------------------------- part 1
def pinned_dropout():
    inp = Input(shape=(20,))
    x = inp
    y = Dropout(0.5)(x, training=True) # Applies dropout at training time *and* inference time
    model = Model(inp, y)
    ones = np.ones((4, 20), dtype="float32")
    pred = model.predict(ones, verbose=0)
    plain = model(ones, training=False)
    print(f"RESULT pinned_dropout predict_zeros={int((pred == 0).sum())} "
          f"call_training_false_zeros={int((plain == 0).sum())} of {pred.size} "
          f"values={sorted(set(pred.ravel().tolist()))}")
    return pred, plain


# --------------------------------------------------------------------------- part 2
def ResNet50Base(input_shape=(32, 32, 3), weights=None, name="resnet50_base"):
    """A small stand-in for a pretrained image model: Flatten then two Dense layers.

    ``weights='pretrained'`` gives fixed (seeded) weights, standing in for loading them.
    """
    base = Sequential([
        Flatten(input_shape=input_shape),
        Dense(32, activation="relu"),
        Dense(16, activation="relu"),
    ], name=name)
    if weights == "pretrained":
        rng = np.random.default_rng(50)
        base.set_weights([rng.normal(0, 0.05, w.shape) for w in base.weights])
    return base


def frozen_base():
    model = Sequential([
        ResNet50Base(input_shape=(32, 32, 3), weights='pretrained'),
        Dense(10),
    ])
    model.layers[0].trainable = False # Freeze ResNet50Base.
    assert model.layers[0].trainable_weights == [] # ResNet50Base has no trainable weights.
    assert len(model.trainable_weights) == 2 # Just the bias & kernel of the Dense layer.
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(4)
    x = rng.random((32, 32, 32, 3)).astype("float32")
    y = rng.random((32, 10)).astype("float32")
    base, head = model.layers
    b0, h0 = base.get_weights(), head.get_weights()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0) # Train Dense while excluding ResNet50Base.
    base_changed = any(not np.array_equal(a, b) for a, b in zip(b0, base.get_weights()))
    head_changed = all(not np.array_equal(a, b) for a, b in zip(h0, head.get_weights()))
    print(f"RESULT frozen_base base_trainable_weights={len(base.trainable_weights)} "
          f"model_trainable_weights={len(model.trainable_weights)} "
          f"base_changed={base_changed} dense_changed={head_changed}")
    return base_changed, head_changed


# --------------------------------------------------------------------------- part 3
def autoscale(frozen):
    """Fit ``y = AutoScaleDropout(0.5)(x, training=True)`` to ``3 * x``.

    In training mode the layer outputs ``scale * x * mask / (1 - rate)``; the scale
    minimizing the expected squared error is ``3 * (1 - rate) = 1.5``, which ``fit``
    approaches.  Frozen, the model has nothing to train (fastlayers says so at
    ``compile()``) and the scale stays 1 -- yet dropout still drops.
    """
    x = np.random.default_rng(5).random((256, 16)).astype("float32")
    target = 3.0 * x

    layer = AutoScaleDropout(0.5)
    if frozen:
        layer.trainable = False
    inp = Input(shape=(16,))
    # Applies dropout at training time *and* inference time (*and*, unless frozen,
    # learns the scaling factor during training).
    y = layer(inp, training=True)
    n_trainable = len(layer.trainable_weights)
    model = Model(inp, y, name="frozen_autoscale" if frozen else "autoscale")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer=fl.optimizers.SGD(0.1), loss="mse")
    s0 = float(layer.scale.numpy())
    model.fit(x, target, epochs=10, batch_size=32, verbose=0)
    s1 = float(layer.scale.numpy())
    ones = np.ones((2, 16), "float32")
    pred = model.predict(ones, verbose=0)
    direct = layer(ones, training=True)
    kind = "frozen" if frozen else "trainable"
    print(f"RESULT autoscale_{kind} trainable_weights={n_trainable} scale_before={s0:.4f} "
          f"scale_after={s1:.4f} scale_changed={s0 != s1} "
          f"dropout_zeros_in_predict={int((pred == 0).sum())} "
          f"dropout_zeros_in_call={int((direct == 0).sum())} of {ones.size} "
          f"compile_warnings={[str(w.message) for w in caught]}")
    return n_trainable, s0, s1, pred, direct


# --------------------------------------------------------------------------- part 4
def frozen_batchnorm(freeze=True):
    rng = np.random.default_rng(6)
    x = rng.normal(5.0, 2.0, (64, 4)).astype("float32")
    y = rng.random((64, 1)).astype("float32")
    inp = Input(shape=(4,))
    bn = BatchNormalization()
    out = Dense(1)(bn(inp))
    model = Model(inp, out)
    bn.moving_mean.assign([4.0, 5.0, 6.0, 5.0])     # pretrained statistics
    bn.moving_variance.assign([4.0, 4.0, 4.0, 4.0])
    if freeze:
        bn.trainable = False
    model.compile(optimizer="sgd", loss="mse")
    before = bn.get_weights()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = bn.get_weights()
    changed = {w.name: not np.array_equal(a, b) for w, a, b in zip(bn.weights, before, after)}
    train_out = bn(x, training=True)
    infer_out = bn(x, training=False)
    same = bool(np.allclose(train_out, infer_out))
    kind = "frozen" if freeze else "trainable"
    print(f"RESULT batchnorm_{kind} changed={changed} "
          f"training_true_equals_inference={same}")
    return changed, same


def main():
    fl.utils.set_random_seed(4)
    pinned_dropout()
    frozen_base()
    autoscale(frozen=False)
    autoscale(frozen=True)
    frozen_batchnorm(freeze=True)
    frozen_batchnorm(freeze=False)


if __name__ == "__main__":
    main()
