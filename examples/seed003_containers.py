# coding: utf8
"""Seed 003: behaviour when trainable = False of a Container.

The seed's code with only its imports changed (plot_model dropped).  The seed
switches between its two cases by commenting a line; here the case is chosen on the
command line:

    python seed003_containers.py        # Case 1 then Case 2
    python seed003_containers.py 1      # Case 1: trainable=False set before compile()
    python seed003_containers.py 2      # Case 2: trainable=False set after compile()

Expected (the seed's table):

    Case 1: model_normal.fit changes the container and other weights;
            model_fixed.fit changes only the other weights (not the container's).
    Case 2: compile() took the picture while the container was trainable, so
            model_fixed.fit DOES change the container weights -- and fastlayers warns
            once that compile() should be called again.
"""

import sys

import numpy as np
from fastlayers.models import Input, Container, Model
from fastlayers.layers import Dense
from fastlayers import backend


def all_weights(m):
    return [list(w.reshape((-1))) for w in m.get_weights()]


def random_fit(m):
    x1 = np.random.random(10).reshape((5, 2))
    y1 = np.random.random(5).reshape((5, 1))
    m.fit(x1, y1, verbose=False)


def run_case(case):
    """The seed's script, with ``# Case1`` / ``# Case2`` chosen by ``case``.

    Returns the models, the containers and the printed weights at the three points.
    """
    print("=== Case %d ===" % case)
    np.random.seed(100)

    x = in_x = Input((2, ))

    # Create 2 Containers shared same wights
    x = Dense(1)(x)
    x = Dense(1)(x)
    fc_all = Container(in_x, x, name="NormalContainer")
    fc_all_not_trainable = Container(in_x, x, name="FixedContainer")

    # Create 2 Models using the Containers
    x = fc_all(in_x)
    x = Dense(1)(x)
    model_normal = Model(in_x, x)

    x = fc_all_not_trainable(in_x)
    x = Dense(1)(x)
    model_fixed = Model(in_x, x)

    # Set one Container trainable=False
    if case == 1:
        fc_all_not_trainable.trainable = False  # Case1

    # Compile
    model_normal.compile(optimizer="sgd", loss="mse")
    model_fixed.compile(optimizer="sgd", loss="mse")

    if case == 2:
        fc_all_not_trainable.trainable = False  # Case2

    # Watch which weights are updated by model.fit
    print("Initial Weights")
    print("Model-Normal: %s" % all_weights(model_normal))
    print("Model-Fixed : %s" % all_weights(model_fixed))
    initial = (all_weights(model_normal), all_weights(model_fixed))

    random_fit(model_normal)

    print("after training Model-Normal")
    print("Model-Normal: %s" % all_weights(model_normal))
    print("Model-Fixed : %s" % all_weights(model_fixed))
    after_normal = (all_weights(model_normal), all_weights(model_fixed))

    random_fit(model_fixed)

    print("after training Model-Fixed")
    print("Model-Normal: %s" % all_weights(model_normal))
    print("Model-Fixed : %s" % all_weights(model_fixed))
    after_fixed = (all_weights(model_normal), all_weights(model_fixed))

    # plot_model(model_normal, "model_normal.png ", show_shapes=True)

    table = summarize(initial, after_normal, after_fixed)
    for fit_name, row in table.items():
        print("RESULT case=%d fit=%s container=%s other=%s"
              % (case, fit_name, row["container"], row["other"]))
    return {"models": (model_normal, model_fixed),
            "containers": (fc_all, fc_all_not_trainable),
            "weights": (initial, after_normal, after_fixed),
            "table": table}


def summarize(initial, after_normal, after_fixed):
    """The seed's table: for each fit, did the container / other weights change?

    Each argument is (Model-Normal weights, Model-Fixed weights); in both models the
    first 4 arrays are the shared container's, the last 2 the model's own Dense.
    """
    def diff(before, after, model_index, part):
        b, a = before[model_index], after[model_index]
        idx = range(0, 4) if part == "container" else range(4, 6)
        return "Change" if any(b[i] != a[i] for i in idx) else "It does not change"

    return {
        "model_normal": {"container": diff(initial, after_normal, 0, "container"),
                         "other": diff(initial, after_normal, 0, "other")},
        "model_fixed": {"container": diff(after_normal, after_fixed, 1, "container"),
                        "other": diff(after_normal, after_fixed, 1, "other")},
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a not in ("1", "2") for a in argv):
        raise SystemExit("usage: seed003_containers.py [1] [2]")
    cases = [int(a) for a in argv] or [1, 2]
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        # Print float32 scalars as the seed shows them (0.5, not np.float32(0.5)).
        np.set_printoptions(legacy="1.25")
    for case in cases:
        backend.clear_session()  # each case names its layers/models as a fresh script would
        run_case(case)


if __name__ == "__main__":
    main()
