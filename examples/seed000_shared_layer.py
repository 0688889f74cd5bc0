"""Seed 000/001: setting a model's ``trainable`` vs setting each layer's ``trainable``.

The answer's example, with fastlayers imports and the ``...`` filled in:

    inp = Input(shape=...)
    shared_layer = Dense(...)
    sout = shared_layer(inp)
    m1_out = Dense(...)(sout)
    m2_out = Dense(...)(sout)
    model1 = Model(inp, m1_out)
    model2 = Model(inp, m2_out)

* ``model1.trainable = False`` freezes all of model1 (training model1 updates nothing,
  shared_layer included) but leaves the layers' own flags alone, so model2 still
  trains shared_layer;
* ``model1.layers[1].trainable = False`` freezes shared_layer itself, for both models.

Each ``fit`` prints one line ``RESULT <scenario> fit=<model> changed=[...] unchanged=[...]``
naming the weights it changed.  ``python seed000_shared_layer.py``
"""
import warnings

import numpy as np

import fastlayers as fl
from fastlayers.layers import Dense
from fastlayers.models import Input, Model, Sequential


def build():
    """The answer's two models sharing one layer (shapes filled in)."""
    inp = Input(shape=(4,))

    shared_layer = Dense(3, name="shared_layer")
    sout = shared_layer(inp)

    m1_out = Dense(1, name="model1_head")(sout)
    m2_out = Dense(1, name="model2_head")(sout)

    model1 = Model(inp, m1_out, name="model1")
    model2 = Model(inp, m2_out, name="model2")
    return shared_layer, model1, model2


def data():
    rng = np.random.default_rng(0)
    return rng.random((16, 4)).astype("float32"), rng.random((16, 1)).astype("float32")


def all_weights(models):
    """{'<layer>/<weight>': copy} over the models' weights (shared ones once)."""
    out = {}
    for m in models:
        for w in m.weights:
            out.setdefault(w.path, w.numpy())
    return out


def fit_and_diff(model, models):
    """Fit ``model`` one epoch; return (changed, unchanged) weight paths over ``models``."""
    before = all_weights(models)
    x, y = data()
    with warnings.catch_warnings():
        # A model compiled with nothing to train says so once, at compile().
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    after = all_weights(models)
    changed = sorted(k for k in before if not np.array_equal(before[k], after[k]))
    unchanged = sorted(k for k in before if k not in changed)
    return changed, unchanged


def scenario(name):
    """Run one scenario; returns {'model1': (changed, unchanged), 'model2': (...)}."""
    fl.backend.clear_session()
    fl.utils.set_random_seed(0)
    shared_layer, model1, model2 = build()
    if name == "model1.trainable=False":
        model1.trainable = False
    elif name == "model1.layers[1].trainable=False":
        assert model1.layers[1] is shared_layer
        model1.layers[1].trainable = False
    else:
        raise ValueError(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model1.compile(optimizer="sgd", loss="mse")
    model2.compile(optimizer="sgd", loss="mse")
    print(f"# {name}: model1.trainable={model1.trainable}, layer flags in model1: "
          f"{[(l.name, l.trainable) for l in model1.layers]}")
    print(f"#   model1.trainable_weights={[w.path for w in model1.trainable_weights]}")
    print(f"#   model2.trainable_weights={[w.path for w in model2.trainable_weights]}")
    results = {}
    for m in (model1, model2):
        changed, unchanged = fit_and_diff(m, [model1, model2])
        results[m.name] = (changed, unchanged)
        print(f"RESULT {name} fit={m.name} changed={changed} unchanged={unchanged}")
    return results


def sequential_question():
    """The question: a Sequential set trainable=False keeps its layers' flags True."""
    fl.backend.clear_session()
    model = Sequential([Dense(8, input_shape=(4,)), Dense(8), Dense(1)], name="question_model")
    model.trainable = False
    flags = [layer.trainable for layer in model.layers]
    print(f"RESULT question model.trainable={model.trainable} layer_flags={flags} "
          f"model_trainable_weights={len(model.trainable_weights)}")
    return model.trainable, flags, len(model.trainable_weights)


SCENARIOS = ("model1.trainable=False", "model1.layers[1].trainable=False")


def main():
    sequential_question()
    for name in SCENARIOS:
        scenario(name)


if __name__ == "__main__":
    main()
