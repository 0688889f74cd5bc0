"""Data-parallel training: the same script on one process or on several, over MPI.

    pip install "fastlayers[mpi]"                          # mpi4py + Open MPI
    python examples/distributed_fit.py                     # one process
    mpirun -n 2 python examples/distributed_fit.py         # two processes, this machine
    mpirun -n 8 --hostfile hosts python examples/distributed_fit.py   # several machines

Every rank holds the whole data set and the whole model.  ``batch_size`` is the
*global* batch: each of N ranks computes the gradients of its 1/N of every batch,
the gradients of the trainable weights are averaged across ranks (frozen ones are
never sent), and every rank applies the same update, so the weights stay identical
everywhere and equal those of a one-process run on the same batches.  Only rank 0
prints.
"""
import sys

import numpy as np

import fastlayers as fl


def make_data(n=4096, features=32, classes=4, seed=0):
    """A synthetic classification task, the same on every rank (fixed seed)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    teacher = rng.standard_normal((features, classes))
    y = np.argmax(np.tanh(x @ teacher) + 0.3 * rng.standard_normal((n, classes)), axis=1)
    return x, y


def main(argv):
    epochs = int(argv[0]) if argv else 5
    fl.distribute.init()             # size 1 unless started by mpirun
    fl.utils.set_random_seed(42)     # one seed: the same initial weights and shuffles
    strategy = fl.distribute.DataParallel()
    x, y = make_data()

    base = fl.layers.Dense(64, activation="relu", name="base")
    model = fl.Sequential([fl.layers.Input((x.shape[1],)), base,
                           fl.layers.Dropout(0.1),
                           fl.layers.Dense(64, activation="relu", name="hidden"),
                           fl.layers.Dense(4, activation="softmax", name="head")])
    model.compile(optimizer=fl.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=256, epochs=epochs, distribute=strategy,
              verbose=2 if strategy.is_primary else 0)

    # Freeze the base and fine-tune the rest: its gradients are no longer exchanged.
    base.trainable = False
    model.compile(optimizer=fl.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    strategy.reset_stats()
    model.fit(x, y, batch_size=256, epochs=1, distribute=strategy, verbose=0)

    stats = strategy.stats
    in_sync = fl.distribute.weights_in_sync(model)
    loss, acc = model.evaluate(x, y, batch_size=1024, verbose=0)
    if strategy.is_primary:
        trainable = sum(w.value.nbytes for w in model.compiled_trainable_weights)
        print(f"RESULT ranks={strategy.size} loss={loss:.6f} accuracy={acc:.4f} "
              f"weights_in_sync={in_sync}")
        print(f"RESULT frozen-base steps={stats['steps']} "
              f"bytes_per_step={stats['bytes_last_step']} trainable_bytes={trainable} "
              f"wait_seconds={stats['wait_seconds']:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
