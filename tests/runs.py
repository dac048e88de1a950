"""Log directories written by the real GradWatch callback, for plugin tests."""

import keras
import numpy as np

import gradwatch
from conftest import mlp
from gradwatch_tensorboard import metadata
from gradwatch_tensorboard.summary import SummaryWriter

HOSTILE_LAYER = "<img src=x onerror=alert(1)>"
HOSTILE_RUN = "<b>run\"'&amp;</b>"
HOSTILE_LAYERS = [HOSTILE_LAYER, "quote\"'layer", "ünïcødé-层/<script>alert(2)</script>", "x" * 300]


def trained_mlp(depth, activation, initializer, width=32):
    """`conftest.mlp` as the plugin tests train it: layers `dense_0..`,
    learning rate 0.01, so that the values move from step to step."""
    return mlp(depth, width, activation, initializer, learning_rate=0.01, prefix="dense_")


def train(model, log_dir, steps=40, update_freq=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * 16, model.input_shape[-1])).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True))
    model.fit(
        x, y, batch_size=16, epochs=1, verbose=0,
        callbacks=[gradwatch.GradWatch(log_dir, update_freq=update_freq, verbose=0)],
    )


def write_gallery(root):
    """Three small runs: a vanishing sigmoid, a healthy ReLU, hostile names."""
    keras.utils.set_random_seed(0)
    limit = 1.0 / np.sqrt(32)
    train(trained_mlp(8, "sigmoid", keras.initializers.RandomUniform(-limit, limit)), str(root / "sigmoid"))
    train(trained_mlp(8, "relu", "he_normal"), str(root / "relu"))
    # TensorFlow's name scopes refuse such layer names, but a run directory
    # can carry them, and the format must carry any name: write it directly.
    writer = SummaryWriter(str(root / HOSTILE_RUN), HOSTILE_LAYERS)
    for step in range(0, 20, 2):
        writer.write_step(step, {
            "activation_var": np.linspace(0.5, 2.0, len(HOSTILE_LAYERS)) * (1 + step),
            "gradient_var": np.logspace(-6, -2, len(HOSTILE_LAYERS)),
        })
    # A findings document naming them, as the callback writes it.
    writer.write_document(18, metadata.FINDINGS_TAG, {
        "version": 1, "step": 18, "final": True, "findings": [{
            "rule": "dying_units", "severity": "warning", "layers": HOSTILE_LAYERS[:2],
            "first_step": 4, "last_step": 18, "ongoing": True, "metric": "gradient_var",
            "message": f"layers {HOSTILE_LAYERS[0]}\u2013{HOSTILE_LAYERS[1]}: 50% of units dead since step 4",
            "remedy": "<script>alert(3)</script>",
        }],
    }, kind="findings")
    writer.close()
    return root
