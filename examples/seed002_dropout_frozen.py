"""Seed 002: is a dropout layer still active in a frozen model (trainable=False)?

Short answer: yes.  ``trainable`` says whether weights are updated; ``training`` (the
learning phase) says whether dropout drops.  Part 1 is the answer's reproducible
example with only its imports changed.  Part 2 is the question's model_AB: two
trained models with dropout, frozen, merged with a new Dense layer; while model_AB
trains, their dropout layers still drop and only the new Dense changes.

Lines starting with ``RESULT`` state the findings.  ``python seed002_dropout_frozen.py``
"""
import warnings

import numpy as np

import fastlayers as fl
from fastlayers import backend as K
from fastlayers import layers, models


def reproducible_example():
    """The answer's code, imports changed; returns (training output, test output)."""
    # --- seed code (from keras import ... -> from fastlayers import ...) ---
    inp = layers.Input(shape=(10,))
    out = layers.Dropout(0.5)(inp)

    model = models.Model(inp, out)
    model.layers[-1].trainable = False  # set dropout layer as non-trainable
    with warnings.catch_warnings():
        # fastlayers says once that this model has nothing to train: expected here.
        warnings.simplefilter("ignore", UserWarning)
        model.compile(optimizer='adam', loss='mse') # IMPORTANT: we must always compile model after changing `trainable` attribute

    # create a custom backend function so that we can control the learning phase
    func = K.function(model.inputs + [K.learning_phase()], model.outputs)

    x = np.ones((1,10))
    # learning phase = 1, i.e. training mode
    print(func([x, 1]))
    # the output will be:
    # [array([[2., 2., 2., 0., 0., 2., 2., 2., 0., 0.]], dtype=float32)]
    # as you can see some of the neurons have been dropped

    # now set learning phase = 0, i.e test mode
    print(func([x, 0]))
    # the output will be:
    # [array([[1., 1., 1., 1., 1., 1., 1., 1., 1., 1.]], dtype=float32)]
    # unsurprisingly, no neurons have been dropped in test phase
    # --- end of seed code ---
    # Two more calls (a new mask is drawn at every training-phase call):
    train_out, test_out = func([x, 1])[0], func([x, 0])[0]
    print(f"RESULT phase1 dropped={int((train_out == 0).sum())} "
          f"values={sorted(set(train_out.ravel().tolist()))}")
    print(f"RESULT phase0 dropped={int((test_out == 0).sum())} "
          f"values={sorted(set(test_out.ravel().tolist()))}")
    return train_out, test_out


def make_trained_model(name, x, y):
    """A small trained model with a dropout layer (model_A / model_B of the question)."""
    inp = layers.Input(shape=(x.shape[1],))
    h = layers.Dense(32, activation="relu", name=f"{name}_dense")(inp)
    h = layers.Dropout(0.5, name=f"{name}_dropout")(h)
    out = layers.Dense(4, name=f"{name}_out")(h)
    model = models.Model(inp, out, name=name)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def merged_model_ab():
    """Freeze two trained models, merge them with a new Dense; train model_AB.

    Returns a dict with what changed and the evidence that dropout was active.
    """
    fl.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.random((128, 10)).astype("float32")
    ya = rng.random((128, 4)).astype("float32")
    yb = rng.random((128, 4)).astype("float32")
    model_A = make_trained_model("model_A", x, ya)
    model_B = make_trained_model("model_B", x, yb)

    # Freeze both models: the containers' own flags, their layers' flags stay True.
    model_A.trainable = False
    model_B.trainable = False

    inp = layers.Input(shape=(10,))
    merged = layers.Concatenate()([model_A(inp), model_B(inp)])
    new_dense = layers.Dense(1, name="new_dense")
    model_AB = models.Model(inp, new_dense(merged), name="model_AB")
    model_AB.compile(optimizer=fl.optimizers.SGD(0.05), loss="mse")
    print(model_AB.explain_trainable())

    # Evidence 1: model_A's dropout drops under the training phase although
    # model_A (and nothing in it) is trainable.
    func_A = K.function(model_A.inputs + [K.learning_phase()], model_A.outputs)
    a_train, a_train2 = func_A([x[:4], 1])[0], func_A([x[:4], 1])[0]
    a_test = func_A([x[:4], 0])[0]
    print(f"RESULT model_A phase1 differs_from_phase0={not np.allclose(a_train, a_test)} "
          f"two_phase1_calls_differ={not np.allclose(a_train, a_train2)}")

    # Evidence 2: train_on_batch (training=True) sees different outputs than
    # inference: its loss differs from test_on_batch on the same batch and weights,
    # and changes from step to step with the new dense frozen by a zero learning rate.
    y = rng.random((128, 1)).astype("float32")
    probe = models.Model(inp, new_dense(merged), name="probe")
    probe.compile(optimizer=fl.optimizers.SGD(0.0), loss="mse")
    test_loss = probe.test_on_batch(x, y)
    train_losses = [probe.train_on_batch(x, y) for _ in range(3)]
    dropout_active = all(abs(t - test_loss) > 1e-6 for t in train_losses) and \
        len(set(train_losses)) > 1
    print(f"RESULT model_AB training losses={[round(v, 6) for v in train_losses]} "
          f"inference loss={test_loss:.6f} dropout_active={dropout_active}")

    # Which weights does model_AB.fit change?  Only the new dense.
    before = {w.path: w.numpy() for w in model_AB.weights}
    model_AB.fit(x, y, epochs=2, batch_size=32, verbose=0)
    changed = sorted(w.path for w in model_AB.weights
                     if not np.array_equal(before[w.path], w.numpy()))
    unchanged = sorted(p for p in before if p not in changed)
    print(f"RESULT model_AB fit changed={changed} unchanged={unchanged}")
    return {"changed": changed, "unchanged": unchanged, "dropout_active": dropout_active,
            "a_train": a_train, "a_train2": a_train2, "a_test": a_test,
            "train_losses": train_losses, "test_loss": test_loss}


def main():
    fl.utils.set_random_seed(0)  # reproducible masks from run to run
    reproducible_example()
    merged_model_ab()


if __name__ == "__main__":
    main()
