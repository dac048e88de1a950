"""Distributions (histograms and per-unit shares), each checked against a
model whose answer is known by construction. Runs on every backend
(tests/test_backends.py runs it under JAX too)."""

import keras
import numpy as np
import pytest
from conftest import fit_and_load, rng
from gradwatch_tensorboard import metadata

import gradwatch

BINS = metadata.histogram_bins()
LOW, HIGH = metadata.HISTOGRAM_DECADES


def expected_histogram(values):
    """The bins of `values` by their definition (metadata.histogram_bins):
    each finite non-zero value by its sign and the decade of its magnitude,
    clipped to the decades shown."""
    values = np.asarray(values, np.float32).reshape(-1)
    counts = np.zeros(len(BINS))
    for bin_index, spec in enumerate(BINS):
        if spec["sign"] is None:
            counts[bin_index] = np.sum(~np.isfinite(values))
        elif spec["sign"] == 0:
            counts[bin_index] = np.sum(values == 0)
        else:
            v = values[np.isfinite(values) & (np.sign(values) == spec["sign"])]
            magnitude = np.abs(v).astype(np.float32)
            # The edges as float32 (the tensors' type): an element equal to
            # float32(1e-5) is 1e-5 and counts in the decade 1e-5 starts.
            lower = -np.inf if spec["low"] == LOW else np.float32(10.0 ** spec["low"])
            upper = np.inf if spec["high"] == HIGH else np.float32(10.0 ** spec["high"])
            counts[bin_index] = np.sum((magnitude >= lower) & (magnitude < upper))
    return counts


def identity(units, activation=None, name="copy"):
    """Input -> Dense(identity kernel, zero bias, `activation`), not trained."""
    model = keras.Sequential([
        keras.Input((units,)),
        keras.layers.Dense(units, activation=activation, kernel_initializer="identity", name=name),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


def distribution(run, name, layer, row=0):
    steps, values = run.distribution(name)
    return values[row, run.layers.index(layer)]


def test_the_bins_are_signed_decades_then_zero_and_nonfinite():
    assert len(BINS) == metadata.HISTOGRAM_WIDTH == 2 * (HIGH - LOW) + 2
    assert [b["sign"] for b in BINS] == [-1] * (HIGH - LOW) + [0] + [1] * (HIGH - LOW) + [None]
    assert BINS[0]["low"] == HIGH - 1 and BINS[HIGH - LOW - 1]["low"] == LOW


def test_a_constant_layer_fills_exactly_one_bin(log_dir):
    # Dense with a zero kernel and bias 0.5: every output element is 0.5.
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(6, name="constant", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(0.5)),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(0).normal(size=(32, 4)).astype(np.float32)
    run = fit_and_load(model, x, np.zeros((32, 6), np.float32), log_dir, batch_size=32)
    counts = distribution(run, "activation_histogram", "constant")
    expected = np.zeros(len(BINS))
    expected[[b["label"] for b in BINS].index("+1e-1")] = 32 * 6
    np.testing.assert_array_equal(counts, expected)


def test_standard_normal_data_falls_in_its_bins(log_dir):
    x = rng(1).normal(size=(512, 32)).astype(np.float32)
    run = fit_and_load(identity(32), x, x * 0, log_dir, batch_size=512)
    counts = distribution(run, "activation_histogram", "copy")
    np.testing.assert_array_equal(counts, expected_histogram(x))
    # And as N(0, 1) should: P(0.1 <= |x| < 1) = 0.6034, half each sign.
    share = counts[[b["label"] for b in BINS].index("+1e-1")] / x.size
    assert share == pytest.approx(0.6034 / 2, abs=0.01)


def test_relu_zero_bin_counts_the_inactive_elements(log_dir):
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="relu")])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(2).normal(size=(64, 8)).astype(np.float32)
    outputs = np.asarray(model(x))
    run = fit_and_load(model, x, np.zeros((64, 16), np.float32), log_dir, batch_size=64)
    counts = distribution(run, "activation_histogram", "relu")
    zero = [b["label"] for b in BINS].index("0")
    assert counts[zero] == np.sum(outputs == 0) > 0
    np.testing.assert_array_equal(counts, expected_histogram(outputs))


def test_gradient_histogram_is_that_of_dloss_doutput(log_dir):
    x = rng(3).normal(size=(32, 4)).astype(np.float32)
    y = rng(4).normal(size=(32, 4)).astype(np.float32)
    run = fit_and_load(identity(4), x, y, log_dir, batch_size=32)
    # Mean squared error over 32 x 4 elements: dL/dy_pred = 2 (y_pred - y) / 128.
    expected = expected_histogram((2.0 * (x - y) / x.size).astype(np.float32))
    np.testing.assert_array_equal(distribution(run, "gradient_histogram", "copy"), expected)


def test_nonfinite_elements_fill_the_last_bin(log_dir):
    x = rng(5).normal(size=(16, 4)).astype(np.float32)
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    model = identity(4)
    outputs = np.asarray(model(x))  # The identity's matmul spreads each over its row.
    run = fit_and_load(model, x, np.zeros_like(x), log_dir, batch_size=16)
    counts = distribution(run, "activation_histogram", "copy")
    assert counts[-1] == np.sum(~np.isfinite(outputs)) == 12
    np.testing.assert_array_equal(counts, expected_histogram(outputs))


def test_a_magnitude_on_a_decade_edge_counts_in_the_decade_it_starts(log_dir):
    # Exact powers of ten, where log10 rounding could go either way, and
    # magnitudes beyond both ends of the decades.
    edges = [10.0 ** e for e in range(LOW, HIGH + 1)] + [10.0 ** (LOW - 1), 10.0 ** (HIGH + 1)]
    row = np.array(edges + [-e for e in edges] + [0.0, -0.0], np.float32)
    x = np.tile(row, (4, 1))
    run = fit_and_load(identity(row.size), x, x * 0, log_dir, batch_size=4)
    np.testing.assert_array_equal(
        distribution(run, "activation_histogram", "copy"), expected_histogram(x)
    )


def test_small_and_large_layers_and_a_shared_one_are_each_counted_apart(log_dir):
    # Small layers are binned together after one concatenation, a large one
    # (more than 4096 elements per example) alone; a shared layer's two calls
    # pool into its one histogram.
    keras.utils.set_random_seed(11)
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, activation="tanh", name="shared")
    small = keras.layers.Dense(3, activation="relu", name="small")(shared(shared(inputs)))
    large = keras.layers.Dense(5000, name="large")(small)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(large))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(12).normal(size=(16, 8)).astype(np.float32) * 3
    first = np.asarray(shared(x))
    second = np.asarray(shared(first))
    after_small = np.asarray(model.get_layer("small")(second))
    after_large = np.asarray(model.get_layer("large")(after_small))
    run = fit_and_load(model, x, np.zeros((16, 1), np.float32), log_dir, batch_size=16)
    for layer, outputs in (
        ("shared", np.concatenate([first, second])),
        ("small", after_small),
        ("large", after_large),
    ):
        np.testing.assert_allclose(
            distribution(run, "activation_histogram", layer), expected_histogram(outputs),
            atol=2, err_msg=layer,  # Round-off may move an element across an edge.
        )
        assert distribution(run, "activation_histogram", layer).sum() == outputs.size
    np.testing.assert_array_equal(
        distribution(run, "unit_activity", "small")[:3], (after_small > 0).mean(0)
    )


def test_histogram_freq_zero_traces_no_distribution_ops(log_dir, monkeypatch):
    from gradwatch import statistics

    binned = []
    original = statistics.signed_log_histograms
    monkeypatch.setattr(
        statistics, "signed_log_histograms",
        lambda *a, **k: binned.append(1) or original(*a, **k),
    )
    x = rng(13).normal(size=(16, 4)).astype(np.float32)
    fit_and_load(identity(4), x, x * 0, f"{log_dir}/none", batch_size=4, update_freq=1, histogram_freq=0)
    assert binned == []
    fit_and_load(identity(4), x, x * 0, f"{log_dir}/some", batch_size=4, update_freq=1, histogram_freq=2)
    assert binned


@pytest.mark.parametrize("dead", [0, 3, 7])
def test_units_forced_dead_have_zero_activity(log_dir, dead):
    bias = np.zeros(12, np.float32)
    bias[:dead] = -100.0  # units 0..dead-1 never leave ReLU's floor
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(12, activation="relu", name="relu",
                           bias_initializer=keras.initializers.Constant(bias)),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(6).normal(size=(64, 6)).astype(np.float32)
    outputs = np.asarray(model(x))
    run = fit_and_load(model, x, np.zeros((64, 12), np.float32), log_dir, batch_size=64)
    activity = distribution(run, "unit_activity", "relu")
    np.testing.assert_allclose(activity[:12], (outputs > 0).mean(0), rtol=1e-6)
    assert (activity[:dead] == 0).all() and (activity[dead:12] > 0).all()
    assert np.isnan(activity[12:]).all()  # beyond the layer's units
    # No flat region for ReLU: no saturation shares.
    assert np.isnan(distribution(run, "unit_saturation", "relu")).all()


def test_sigmoid_units_driven_into_the_tails_are_saturated(log_dir):
    # Inputs far in sigmoid's tails for the first 3 units only.
    x = rng(7).uniform(-0.5, 0.5, size=(64, 8)).astype(np.float32)
    x[:, :3] = 12.0 * np.sign(x[:, :3])
    run = fit_and_load(identity(8, "sigmoid", "sigmoid"), x, np.zeros_like(x), log_dir, batch_size=64)
    saturation = distribution(run, "unit_saturation", "sigmoid")
    np.testing.assert_array_equal(saturation[:8], [1, 1, 1, 0, 0, 0, 0, 0])


def test_distributions_come_at_their_own_cadence(log_dir):
    x = rng(8).normal(size=(64, 4)).astype(np.float32)
    run = fit_and_load(identity(4), x, x * 0, log_dir, batch_size=4, update_freq=2, histogram_freq=6)
    steps, _ = run.distribution("activation_histogram")
    np.testing.assert_array_equal(steps, [0, 6, 12])
    # Every distribution step is recorded too; the others at update_freq.
    np.testing.assert_array_equal(run.steps, [0, 2, 4, 6, 8, 10, 12, 14])


def test_histogram_freq_zero_records_none(log_dir):
    x = rng(9).normal(size=(16, 4)).astype(np.float32)
    run = fit_and_load(identity(4), x, x * 0, log_dir, batch_size=4, update_freq=1, histogram_freq=0)
    assert run.distributions == []
    with pytest.raises(KeyError, match="activation_histogram"):
        run.distribution("activation_histogram")


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2.5, TypeError), (True, TypeError), ("8", TypeError)])
def test_bad_histogram_freq_is_named(bad, error):
    with pytest.raises(error, match="histogram_freq"):
        gradwatch.GradWatch("unused", histogram_freq=bad)
