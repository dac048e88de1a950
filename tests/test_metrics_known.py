"""Every metric against a model whose answer is known by construction."""

import keras
import numpy as np
import pytest

from conftest import column, fit_and_load, mlp, rng


def identity_model(width, activation=None):
    """Input -> Dense(identity kernel, zero bias): the output is the input."""
    model = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer="identity",
                name="copy",
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


def test_activation_mean_and_variance_are_those_of_the_batch(log_dir):
    x = rng(0).normal(2.0, 3.0, size=(64, 8)).astype(np.float32)
    run = fit_and_load(identity_model(8), x, x * 0, log_dir, batch_size=64, update_freq=1)
    np.testing.assert_allclose(column(run, "activation_mean", "copy", 0), x.mean(), rtol=1e-4)
    np.testing.assert_allclose(column(run, "activation_var", "copy", 0), x.var(), rtol=1e-4)
    np.testing.assert_allclose(column(run, "activation_gain", "copy", 0), 1.0, rtol=1e-4)


def test_gradient_variance_is_that_of_dloss_doutput(log_dir):
    x = rng(1).normal(size=(32, 4)).astype(np.float32)
    y = rng(2).normal(size=(32, 4)).astype(np.float32)
    run = fit_and_load(identity_model(4), x, y, log_dir, batch_size=32, update_freq=1)
    # mean squared error over 32 x 4 elements: dL/dy_pred = 2 (y_pred - y) / 128
    expected = (2.0 * (x - y) / x.size).astype(np.float64).var()
    np.testing.assert_allclose(column(run, "gradient_var", "copy", 0), expected, rtol=1e-4)


def test_gradient_norm_and_update_ratio_of_plain_sgd(log_dir):
    learning_rate = 0.1
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(3, name="dense", use_bias=False)]
    )
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    kernel_before = model.get_layer("dense").kernel.numpy().copy()
    x = rng(3).normal(size=(16, 5)).astype(np.float32)
    y = rng(4).normal(size=(16, 3)).astype(np.float32)
    run = fit_and_load(model, x, y, log_dir, batch_size=16, update_freq=1)
    y_pred = x @ kernel_before
    grad = x.T @ (2.0 * (y_pred - y) / y.size)
    np.testing.assert_allclose(column(run, "gradient_norm", "dense", 0), np.linalg.norm(grad), rtol=1e-4)
    # SGD moves W by lr * g exactly.
    expected_ratio = learning_rate * np.linalg.norm(grad) / np.linalg.norm(kernel_before)
    np.testing.assert_allclose(column(run, "update_ratio", "dense", 0), expected_ratio, rtol=1e-3)


def constant_gradient_model(learning_rate, kernel_initializer="glorot_uniform"):
    """Dense(3, no bias) trained by SGD on the loss mean(y_pred): on rows
    that all equal v, dL/dW = v / 3 in every column, at every step."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="dense", use_bias=False,
                                               kernel_initializer=kernel_initializer)]
    )
    model.compile(keras.optimizers.SGD(learning_rate), lambda y_true, y_pred: keras.ops.mean(y_pred))
    return model


def test_distance_from_init_grows_by_the_known_steps(log_dir):
    keras.utils.set_random_seed(5)
    learning_rate, v = 0.05, np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    model = constant_gradient_model(learning_rate)
    initial = model.get_layer("dense").kernel.numpy().copy()
    x = np.tile(v, (8 * 6, 1))
    run = fit_and_load(model, x, np.zeros((48, 3), np.float32), log_dir, batch_size=8, update_freq=1)
    # After step t's update: W - W0 = -(t + 1) * lr * G, G = v / 3 in each column.
    gradient = np.tile(v[:, None] / 3, (1, 3))
    step_distance = learning_rate * np.linalg.norm(gradient) / np.linalg.norm(initial)
    np.testing.assert_allclose(
        run.metric("distance_from_init")[:, 0], step_distance * np.arange(1, 7), rtol=1e-4
    )


def test_distance_from_init_is_from_the_first_watched_weights(log_dir):
    # A second GradWatch, watching something else (a capture of its own),
    # still measures from the weights the first one started from.
    import gradwatch

    learning_rate, v = 0.05, np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    model = constant_gradient_model(learning_rate)
    initial = model.get_layer("dense").kernel.numpy().copy()
    x, y = np.tile(v, (8 * 3, 1)), np.zeros((24, 3), np.float32)
    first = gradwatch.GradWatch(f"{log_dir}/first", update_freq=1, verbose=0)
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[first])
    second = gradwatch.GradWatch(f"{log_dir}/second", update_freq=1, verbose=0, saturation_threshold=0.1)
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[second])
    gradient = np.tile(v[:, None] / 3, (1, 3))
    step_distance = learning_rate * np.linalg.norm(gradient) / np.linalg.norm(initial)
    later = gradwatch.load(f"{log_dir}/second")
    np.testing.assert_allclose(
        later.metric("distance_from_init")[:, 0], step_distance * np.arange(4, 7), rtol=1e-4
    )


def test_distance_from_a_zero_initial_kernel_is_nan(log_dir):
    model = constant_gradient_model(0.05, kernel_initializer="zeros")
    x = np.ones((16, 4), np.float32)
    run = fit_and_load(model, x, np.zeros((16, 3), np.float32), log_dir, batch_size=8, update_freq=1)
    assert np.isnan(run.metric("distance_from_init")).all()
    assert np.isfinite(run.metric("update_ratio")[1, 0])  # The kernel is measured.


@pytest.mark.parametrize("dead", [0, 3, 7])
def test_k_units_forced_dead_are_exactly_k(log_dir, dead):
    units = 10
    bias = np.full(units, 5.0, np.float32)
    bias[:dead] = -1e3  # never above zero: dead for every input
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                units,
                activation="relu",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.1),
                bias_initializer=keras.initializers.Constant(bias),
                name="hidden",
            ),
            keras.layers.Dense(1, name="out"),
        ]
    )
    # Frozen weights: training itself must not kill or revive units here.
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(5).normal(size=(256, 6)).astype(np.float32)
    run = fit_and_load(model, x, x[:, :1], log_dir, batch_size=32, epochs=2, update_freq=1)
    dead_units = run.metric("dead_units")[:, run.layers.index("hidden")]
    np.testing.assert_array_equal(dead_units, dead)
    np.testing.assert_allclose(run.metric("dead_fraction")[:, 0], dead / units)
    np.testing.assert_array_equal(run.metric("dead_units_window")[:, 0], dead)
    # A linear layer has no floor: dead units don't apply.
    assert np.isnan(run.metric("dead_units")[:, run.layers.index("out")]).all()


def test_dormant_units_are_not_dead_across_the_window(log_dir):
    # Unit 0 fires only on rows whose first feature is positive; those rows
    # come in the second batch only. On the first batch it looks dead; over
    # the window it is alive.
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(2, activation="relu", kernel_initializer="identity", name="relu"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.zeros((8, 2), np.float32)
    x[:, 1] = 1.0  # unit 1 always active
    x[:4, 0] = -1.0  # batch 1: unit 0 off
    x[4:, 0] = 1.0  # batch 2: unit 0 on
    run = fit_and_load(model, x, x, log_dir, batch_size=4, update_freq=1)
    np.testing.assert_array_equal(run.metric("dead_units")[:, 0], [1, 0])
    np.testing.assert_array_equal(run.metric("dead_units_window")[:, 0], [1, 0])


def test_batchnorm_fed_n3_4_reports_its_batch_statistics(log_dir):
    x = rng(6).normal(3.0, 2.0, size=(1024, 8)).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    run = fit_and_load(model, x, x[:, :1], log_dir, batch_size=512, update_freq=1)
    first_batch = x[:512]
    np.testing.assert_allclose(column(run, "bn_batch_mean", "bn", 0), first_batch.mean(0).mean(), rtol=1e-4)
    np.testing.assert_allclose(column(run, "bn_batch_var", "bn", 0), first_batch.var(0).mean(), rtol=1e-4)
    assert column(run, "bn_batch_mean", "bn", 0) == pytest.approx(3.0, abs=0.15)
    assert column(run, "bn_batch_var", "bn", 0) == pytest.approx(4.0, rel=0.1)
    # Fresh moving statistics are (0, 1): the skew is |3 - 0| / sqrt(1 + eps).
    expected_skew = np.mean(np.abs(first_batch.mean(0)) / np.sqrt(1.0 + 1e-3))
    np.testing.assert_allclose(column(run, "bn_skew", "bn", 0), expected_skew, rtol=1e-4)
    layer = model.get_layer("bn")
    np.testing.assert_allclose(column(run, "bn_moving_mean", "bn"), layer.moving_mean.numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(column(run, "bn_moving_var", "bn"), layer.moving_variance.numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(column(run, "bn_gamma", "bn"), 1.0)
    np.testing.assert_allclose(column(run, "bn_beta", "bn"), 0.0)
    assert np.isnan(run.metric("bn_batch_mean")[:, 1]).all()


def test_saturation_fraction_of_tanh_on_constructed_inputs(log_dir):
    # Exactly a quarter of the inputs sit far in tanh's tails.
    x = rng(7).uniform(-0.5, 0.5, size=(64, 16)).astype(np.float32)
    x[:, :4] = 8.0 * np.sign(x[:, :4])
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Activation("tanh", name="tanh"), keras.layers.Dense(1, name="out")]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    run = fit_and_load(model, x, x[:, :1], log_dir, batch_size=64, update_freq=1)
    assert column(run, "saturation_fraction", "tanh", 0) == 0.25
    # A layer without a saturating nonlinearity gets NaN, not 0.
    assert np.isnan(column(run, "saturation_fraction", "out", 0))


def initial_profile(model, log_dir, width, seed=0):
    keras.utils.set_random_seed(seed)
    x = rng(seed).normal(size=(256, width)).astype(np.float32)
    y = rng(seed + 1).normal(size=(256, 1)).astype(np.float32)
    return fit_and_load(model, x, y, log_dir, batch_size=256, update_freq=1)


def test_he_init_relu_keeps_forward_variance(log_dir):
    keras.utils.set_random_seed(0)
    model = mlp(16, 256, "relu", "he_normal")
    run = initial_profile(model, log_dir, 256)
    hidden = [run.layers.index(f"h{i}") for i in range(16)]
    variances = run.metric("activation_var")[0, hidden]
    assert variances.max() / variances.min() < 2.0, variances


def test_deep_sigmoid_with_standard_init_vanishes_backward(tmp_path):
    width, depth = 128, 10
    keras.utils.set_random_seed(0)
    limit = 1.0 / np.sqrt(width)
    standard = mlp(depth, width, "sigmoid", keras.initializers.RandomUniform(-limit, limit))
    glorot = mlp(depth, width, "sigmoid", "glorot_uniform")
    he_relu = mlp(depth, width, "relu", "he_normal")

    def backward_ratio(model, name):
        run = initial_profile(model, str(tmp_path / name), width)
        g = run.metric("gradient_var")[0]
        return g[run.layers.index("h0")] / g[run.layers.index(f"h{depth - 1}")]

    standard_ratio = backward_ratio(standard, "standard")
    # sigmoid' <= 1/4 and small weights: >= 16x loss per layer.
    assert standard_ratio < 1e-8
    assert standard_ratio < backward_ratio(glorot, "glorot")
    assert backward_ratio(he_relu, "he") > 1e-2


def test_selu_with_lecun_normal_self_normalises(log_dir):
    keras.utils.set_random_seed(0)
    model = mlp(12, 256, "selu", "lecun_normal")
    run = initial_profile(model, log_dir, 256)
    hidden = [run.layers.index(f"h{i}") for i in range(12)]
    means = run.metric("activation_mean")[0, hidden]
    variances = run.metric("activation_var")[0, hidden]
    np.testing.assert_allclose(means, 0.0, atol=0.15)
    np.testing.assert_allclose(variances, 1.0, atol=0.2)


def test_sigmoid_with_unit_normal_init_saturates(log_dir):
    keras.utils.set_random_seed(0)
    model = mlp(6, 128, "sigmoid", keras.initializers.RandomNormal(stddev=1.0))
    run = initial_profile(model, log_dir, 128)
    deep = [run.layers.index(f"h{i}") for i in range(1, 6)]
    assert (run.metric("saturation_fraction")[0, deep] > 0.5).all()


def test_nonfinite_batches_are_counted_and_training_goes_on(log_dir):
    x = rng(8).normal(size=(96, 4)).astype(np.float32)
    x[40, 1] = np.nan  # second batch of 32
    x[41, 2] = np.inf
    # A frozen identity layer: NaN * 0 and Inf * 0 make each bad row all-NaN,
    # so the second batch has exactly 2 rows x 4 non-finite outputs.
    frozen = keras.layers.Dense(4, name="d", kernel_initializer="identity", trainable=False)
    model = keras.Sequential([keras.Input((4,)), frozen, keras.layers.Dense(1, name="head")])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    import gradwatch

    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    history = model.fit(
        x, np.zeros((96, 1), np.float32), batch_size=32, shuffle=False, verbose=0,
        callbacks=[callback],
    )
    assert len(history.history["loss"]) == 1
    run = gradwatch.load(log_dir)
    np.testing.assert_array_equal(run.steps, [0, 1, 2])
    np.testing.assert_array_equal(run.metric("activation_nonfinite")[:, 0], [0, 8, 0])
    assert np.isfinite(run.metric("activation_var")[1, 0])  # over finite values
    assert run.first_nonfinite == {"step": 1, "layer": "d", "kind": "activation"}
    assert run.headline("nonfinite_count")[1] >= 8
