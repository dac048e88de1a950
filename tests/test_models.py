"""The kinds of model and execution modes GradWatch must handle."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradwatch
from conftest import column, fit_and_load, rng

MODES = {
    "xla": dict(jit_compile=True),
    "graph": dict(jit_compile=False),
    "eager": dict(run_eagerly=True),
}


def mlp(dropout=0.2):
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="a"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(16, activation="tanh", name="b"),
            keras.layers.Dropout(dropout, name="drop"),
            keras.layers.Dense(1, name="out"),
        ]
    )


def data(n=128, d=8, out=1, seed=0):
    x = rng(seed).normal(size=(n, d)).astype(np.float32)
    y = rng(seed + 1).normal(size=(n, out)).astype(np.float32)
    return x, y


def test_execution_modes_record_the_same_layers_and_values(tmp_path):
    runs = {}
    for mode in sorted(MODES):
        keras.utils.set_random_seed(0)  # the same weights
        model = mlp(dropout=0.0)  # no random masks, which differ across modes
        model.compile("adam", "mse", **MODES[mode])
        runs[mode] = fit_and_load(model, *data(), str(tmp_path / mode), update_freq=2)
    for mode, run in runs.items():
        assert run.layers == ["a", "bn", "b", "out"], mode  # Dropout has neither
        np.testing.assert_array_equal(run.steps, [0, 2])
        for name in ("activation_var", "gradient_var", "gradient_norm"):
            assert np.isfinite(run.metric(name)[:, [0, 2, 3]]).all(), (mode, name)
        # XLA, graph and eager measure the same steps of the same training.
        for name in run.metrics:
            np.testing.assert_allclose(
                run.metric(name), runs["graph"].metric(name), rtol=1e-4, atol=1e-6,
                equal_nan=True, err_msg=f"{mode} {name}",
            )


def test_gradwatch_does_not_change_training(tmp_path):
    """Same seed, with and without GradWatch: identical weights after fit."""
    x, y = data()
    weights = []
    for watched in (False, True):
        keras.utils.set_random_seed(7)
        model = mlp()
        model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=False)
        callbacks = [gradwatch.GradWatch(str(tmp_path / "w"), update_freq=1, verbose=0)] if watched else []
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        weights.append([w.numpy() for w in model.weights])
    for plain, watched in zip(*weights):
        np.testing.assert_allclose(watched, plain, rtol=1e-5, atol=1e-7)


def test_model_is_left_as_it_was(log_dir):
    model = mlp()
    model.compile("sgd", "mse")
    layer_calls = {id(layer): type(layer).call for layer in model.layers}
    n_weights = len(model.weights)
    fit_and_load(model, *data(), log_dir, update_freq=1)
    for layer in model.layers:
        assert "call" not in vars(layer), layer.name
        assert type(layer).call is layer_calls[id(layer)]
    assert "apply" not in vars(model.optimizer)
    assert len(model.weights) == n_weights
    # A later fit without the callback runs and records nothing more.
    model.fit(*data(), verbose=0)
    assert len(gradwatch.load(log_dir).steps) == 4


@pytest.mark.tensorflow_only  # Its train step (or reference) uses tf.GradientTape.
def test_functional_nested_and_shared_layers(log_dir):
    inner_in = keras.Input((8,))
    inner_out = keras.layers.Dense(8, activation="relu", name="inner_dense")(inner_in)
    encoder = keras.Model(inner_in, inner_out, name="encoder")
    shared = keras.layers.Dense(8, activation="sigmoid", name="shared")
    inputs = keras.Input((8,))
    h = encoder(inputs)
    h = shared(h)
    h = shared(h)  # called twice per step
    outputs = keras.layers.Dense(1, name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    # Step 0 measures the first batch on the initial weights: compute the
    # shared layer's two outputs and dLoss/d(each) here.
    x, y = data()
    batch, target = tf.constant(x[:32]), tf.constant(y[:32])
    with tf.GradientTape() as tape:
        first = shared(encoder(batch))
        second = shared(first)
        tape.watch([first, second])
        loss = keras.losses.MeanSquaredError()(target, model.get_layer("out")(second))
    grads = tape.gradient(loss, [first, second])
    run = fit_and_load(model, x, y, log_dir, update_freq=4)
    assert run.layers == ["encoder/inner_dense", "shared", "out"]
    # The shared layer pools both calls: twice the elements of one.
    outputs = np.concatenate([first.numpy().ravel(), second.numpy().ravel()])
    gradients = np.concatenate([g.numpy().ravel() for g in grads])
    for metric, expected in (("activation_mean", outputs.mean()), ("activation_var", outputs.var()),
                             ("gradient_var", gradients.var())):
        np.testing.assert_allclose(column(run, metric, "shared", 0), expected, rtol=1e-4, err_msg=metric)
        # Pooled, not either call alone.
        for one in (first, second) if metric.startswith("activation") else grads:
            alone = one.numpy().mean() if metric == "activation_mean" else one.numpy().var()
            assert not np.isclose(alone, expected, rtol=1e-3), metric


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        # Declared out of call order: depth order comes from the call.
        self.head = keras.layers.Dense(1, name="head")
        self.body = keras.layers.Dense(16, activation="elu", name="body")

    def call(self, x):
        return self.head(self.body(x))


def test_subclassed_model_in_call_order(log_dir):
    model = Subclassed()
    model.compile("sgd", "mse")
    run = fit_and_load(model, *data(), log_dir, update_freq=4)
    assert run.layers == ["body", "head"]
    assert np.isfinite(run.metric("saturation_fraction")[:, 0]).all()
    # Its kernels exist only once the first trace has built them: their
    # initial values are still copied, and after step 0 the distance from
    # them is that step's update.
    np.testing.assert_allclose(
        run.metric("distance_from_init")[0], run.metric("update_ratio")[0], rtol=1e-4
    )


class TwoOutputs(keras.layers.Layer):
    """A layer returning (activation, auxiliary): the first output is watched."""

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], 4), name="kernel")

    def call(self, x):
        h = keras.ops.relu(keras.ops.matmul(x, self.kernel))
        return h, h * 2.0


def test_layer_with_several_outputs(log_dir):
    inputs = keras.Input((8,))
    h, aux = TwoOutputs(name="two")(inputs)
    outputs = keras.layers.Dense(1, name="out")(keras.layers.Concatenate()([h, aux]))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    run = fit_and_load(model, *data(), log_dir, update_freq=4)
    assert run.layers[0] == "two"
    assert np.isfinite(run.metric("gradient_var")[:, 0]).all()


def test_conv_and_rnn_layers(log_dir):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Reshape((10, 40)),
            keras.layers.LSTM(6, name="lstm"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile("adam", "mse")
    # Channels 0 and 1 dead by construction (zero kernel, bias -1: ReLU's
    # floor everywhere, zero gradient, so they stay dead); channels 2 and 3
    # alive everywhere (bias 10 against a kernel of at most 0.01 x 27
    # inputs of |x| < 6).
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., :2] = 0.0
    kernel[..., 2:] = rng(5).uniform(-0.01, 0.01, size=kernel[..., 2:].shape)
    model.get_layer("conv").set_weights([kernel, np.array([-1.0, -1.0, 10.0, 10.0], np.float32)])
    x = np.clip(rng(0).normal(size=(64, 12, 12, 3)), -5.9, 5.9).astype(np.float32)
    run = fit_and_load(model, x, x[:, 0, 0, :1], log_dir, update_freq=1)
    assert run.layers == ["conv", "bn", "lstm", "out"]
    conv = run.layers.index("conv")
    np.testing.assert_array_equal(run.metric("dead_units")[:, conv], 2.0)
    np.testing.assert_array_equal(run.metric("dead_fraction")[:, conv], 0.5)
    assert np.isfinite(run.metric("bn_batch_var")[:, 1]).all()
    assert np.isfinite(run.metric("gradient_var")[:, 2]).all()


def test_keras_applications_model(log_dir):
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), weights=None, classes=3, alpha=0.35
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    y = rng(1).integers(0, 3, size=(16,))
    run = fit_and_load(model, x, y, log_dir, batch_size=8, update_freq=1)
    assert len(run.layers) > 50
    assert run.metric("bn_batch_var").shape == (2, len(run.layers))
    bn = [i for i, name in enumerate(run.layers) if "bn" in name.lower()]
    assert np.isfinite(run.metric("bn_batch_var")[:, bn]).all()


def test_steps_per_execution_labels_and_measures_the_last_step_of_a_call(tmp_path):
    x, y = data()
    runs = []
    for steps_per_execution, update_freq in ((2, 4), (1, 1)):
        keras.utils.set_random_seed(3)
        model = mlp()
        model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=steps_per_execution)
        runs.append(fit_and_load(model, x, y, str(tmp_path / str(steps_per_execution)), update_freq=update_freq))
    call, single = runs
    # 4 steps in 2 calls: the first call covers step 0; it measures and is
    # labelled with its last step, 1.
    np.testing.assert_array_equal(call.steps, [1])
    row = list(single.steps).index(1)
    for metric in ("activation_var", "gradient_var", "gradient_norm", "update_ratio"):
        np.testing.assert_allclose(call.metric(metric)[0], single.metric(metric)[row], rtol=1e-4, err_msg=metric)


def test_a_branch_no_loss_reads_leaves_the_rest_measured(log_dir):
    # Output "b" has no loss: no gradient reaches it. On JAX its forward
    # values belong to the finished gradient transform and cannot be used.
    inputs = keras.Input((16,))
    h = keras.layers.Dense(8, activation="relu", name="h")(inputs)
    a = keras.layers.Dense(1, name="a")(h)
    b = keras.layers.Dense(1, name="b")(h)
    model = keras.Model(inputs, [a, b])
    model.compile(keras.optimizers.SGD(0.01), loss=["mse", None])
    x = rng(7).normal(size=(64, 16)).astype(np.float32)
    run = fit_and_load(model, x, [x[:, :1], x[:, :1]], log_dir, batch_size=64, update_freq=1)
    for layer in ("h", "a"):
        assert np.isfinite(column(run, "gradient_var", layer, 0)), layer
        assert np.isfinite(column(run, "activation_var", layer, 0)), layer
    assert np.isnan(column(run, "gradient_var", "b", 0))
