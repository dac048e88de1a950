"""Log directories with distributions whose answers are known by
construction, for the plugin's distribution routes and views."""

import keras
import numpy as np

import gradwatch
from gradwatch_tensorboard import metadata
from gradwatch_tensorboard.summary import SummaryWriter
from runs import HOSTILE_LAYERS, HOSTILE_RUN

BATCH = 16
STEPS = 16
HISTOGRAM_FREQ = 4
DISTRIBUTION_STEPS = [0, 4, 8, 12]
DEAD = 3  # the first units of layer "relu" never leave ReLU's floor
RELU_UNITS = 12
WIDE_UNITS = 300  # more than UNITS_SHOWN
CONSTANT_UNITS = 6
# Hostile run: one layer's unit_activity over steps 0, 2, 4, 6, and the step
# since which each unit has been dead (None: alive at the last step).
HOSTILE_STEPS = [0, 2, 4, 6]
HOSTILE_ACTIVITY = np.array([[0.5, 0.0, 0.5, 0.2], [0.0, 0.0, 0.5, 0.2], [0.3, 0.0, 0.0, 0.2], [0.0, 0.0, 0.0, 0.2]])
HOSTILE_DEAD_SINCE = [6, 0, 4, None]


def known_model():
    """ReLU with DEAD units held dead by their bias, a ReLU layer wider than
    UNITS_SHOWN, then a layer with a zero kernel and bias 0.5, whose every
    output is 0.5 (one bin: +1e-1). SGD at rate 0: nothing changes."""
    bias = np.zeros(RELU_UNITS, np.float32)
    bias[:DEAD] = -100.0
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(RELU_UNITS, activation="relu", name="relu",
                           bias_initializer=keras.initializers.Constant(bias)),
        keras.layers.Dense(WIDE_UNITS, activation="relu", name="wide"),
        keras.layers.Dense(CONSTANT_UNITS, name="constant", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(0.5)),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


def write_distribution_runs(root):
    """`root/known` (the callback on `known_model`) and `root/HOSTILE_RUN`
    (written directly: hostile layer names and a known unit_activity)."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(STEPS * BATCH, 6)).astype(np.float32)
    known_model().fit(
        x, np.zeros((len(x), CONSTANT_UNITS), np.float32), batch_size=BATCH, epochs=1, verbose=0, shuffle=False,
        callbacks=[gradwatch.GradWatch(str(root / "known"), update_freq=2, histogram_freq=HISTOGRAM_FREQ, verbose=0)],
    )
    writer = SummaryWriter(str(root / HOSTILE_RUN), HOSTILE_LAYERS)
    width = metadata.HISTOGRAM_WIDTH
    for row, step in enumerate(HOSTILE_STEPS):
        activity = np.full((len(HOSTILE_LAYERS), metadata.UNITS_SHOWN), np.nan)
        activity[0, :4] = HOSTILE_ACTIVITY[row]
        histogram = np.zeros((len(HOSTILE_LAYERS), width))
        histogram[:, row] = 10.0  # layer l's counts fill bin `row` at that step
        writer.write_step(step, {"activation_var": np.ones(len(HOSTILE_LAYERS))})
        writer.write_distributions(step, {"unit_activity": activity, "activation_histogram": histogram})
    writer.close()
    return root
