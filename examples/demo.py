"""Train a small MLP on a synthetic 3-class problem, then freeze its body and fine-tune the head.

Run: python examples/demo.py
"""
import numpy as np

import fastlayers as fl

fl.utils.set_random_seed(0)
rng = np.random.default_rng(0)

# Three noisy spirals in 2-D, lifted to 20 features with a random projection.
n = 3000
t = rng.uniform(0, 1, n)
cls = rng.integers(0, 3, n)
r = t * 4
theta = t * 6 + cls * 2 * np.pi / 3
x2 = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + rng.normal(0, 0.15, (n, 2))
x = np.tanh(x2 @ rng.normal(size=(2, 20)))
y = cls

model = fl.Sequential([
    fl.layers.Dense(64, activation="relu", input_shape=(20,)),
    fl.layers.BatchNormalization(),
    fl.layers.Dense(64, activation="relu"),
    fl.layers.Dropout(0.1),
    fl.layers.Dense(3),
], name="spiral_mlp")
model.compile(optimizer=fl.optimizers.Adam(0.01),
              loss=fl.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.summary(show_trainable=True)
model.fit(x, y, batch_size=64, epochs=15, validation_split=0.2, verbose=2)

# Freeze everything but the head: the body's weights stay put, and the batch-norm
# layer runs in inference mode under fit (R7).  compile() takes the new picture.
for layer in model.layers[:-1]:
    layer.trainable = False
model.compile(optimizer=fl.optimizers.SGD(0.01, momentum=0.9),
              loss=fl.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
print(model.explain_trainable())
before = [w.copy() for w in model.layers[0].get_weights()]
model.fit(x, y, batch_size=64, epochs=3, verbose=2)
assert all(np.array_equal(a, b) for a, b in zip(before, model.layers[0].get_weights()))
loss, acc = model.evaluate(x, y, verbose=0)
print(f"final loss {loss:.4f}, accuracy {acc:.3f} (frozen body unchanged)")
