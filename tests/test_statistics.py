"""The pure statistics functions against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from gradwatch import activations
from gradwatch import statistics as st


def split(stacked):
    """`unit_partials`' `[matrices, units]` tensors -> one dict per matrix."""
    count = stacked["count"].shape[0]
    return [{k: v[i] for k, v in stacked.items()} for i in range(count)]


def layer_moments(x, unit_axes=None):
    """A whole tensor's moments, as the capture computes them: per-unit
    partials from one read, pooled over units."""
    (partials,) = split(st.unit_partials([st.as_units(tf.constant(x), unit_axes)]))
    return st.pool(*(partials[k] for k in st.MOMENT_FIELDS)), partials


def variance(m):
    return float(m.m2) / float(m.count)


def test_moments_match_numpy_and_skip_nonfinite():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 7)).astype(np.float32)
    x[0, 0], x[5, 3] = np.nan, np.inf  # The first row is each unit's shift.
    m, partials = layer_moments(x)
    finite = x[np.isfinite(x)].astype(np.float64)
    assert float(np.sum(partials["nonfinite"])) == 2
    assert float(m.count) == finite.size
    np.testing.assert_allclose(float(m.mean), finite.mean(), rtol=1e-5)
    np.testing.assert_allclose(variance(m), finite.var(), rtol=1e-5)


def test_one_pass_moments_keep_a_small_spread_about_a_large_mean():
    # A naive one-pass sum of squares loses all of it in float32; the
    # per-unit shift keeps it.
    x = np.random.default_rng(1).normal(1e4, 0.5, size=(4096, 3)).astype(np.float32)
    m, partials = layer_moments(x)
    np.testing.assert_allclose(variance(m), x.astype(np.float64).var(), rtol=1e-3)
    np.testing.assert_allclose(
        np.asarray(partials["m2"]) / 4096, x.astype(np.float64).var(axis=0), rtol=1e-3
    )


def test_moments_of_float16_do_not_overflow():
    # 300**2 overflows float16 (max 65504); the statistics run in float32.
    m, _ = layer_moments(np.array([[300.0, -300.0]], np.float16).T)
    assert variance(m) == pytest.approx(90000.0)


def test_pool_equals_the_statistics_of_the_union():
    data = np.random.default_rng(1).normal(1e3, 0.5, size=1000).astype(np.float32)
    parts = [layer_moments(data[:300, None])[0], layer_moments(data[300:, None])[0]]
    empty = st.Moments(0.0, 0.0, 0.0)
    pooled = st.pool(*(tf.stack([p[i] for p in parts + [empty]]) for i in range(3)))
    np.testing.assert_allclose(variance(pooled), data.astype(np.float64).var(), rtol=1e-3)
    np.testing.assert_allclose(float(pooled.count), 1000)
    np.testing.assert_allclose(float(pooled.mean), data.astype(np.float64).mean(), rtol=1e-6)


def test_pool_partials_pools_moments_adds_counts_and_keeps_peaks():
    rows = np.random.default_rng(3).normal(size=(40, 4)).astype(np.float32)
    rows[20, 1] = np.nan
    a, b = split(st.unit_partials([tf.constant(rows[:20]), tf.constant(rows[20:])]))
    both = st.pool_partials(st.stack_partials([a, b]))
    (whole,) = split(st.unit_partials([tf.constant(rows)]))
    for key in ("count", "mean", "m2", "nonfinite", "peak"):
        np.testing.assert_allclose(np.asarray(both[key]), np.asarray(whole[key]), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(both["nonfinite"]), [0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(both["peak"])[[0, 2, 3]], rows.max(axis=0)[[0, 2, 3]])
    assert np.asarray(both["peak"])[1] == np.inf  # NaN is not at any floor


def test_several_matrices_of_one_shape_are_reduced_each_on_its_own():
    rng = np.random.default_rng(4)
    matrices = [rng.normal(loc, 1.0 + loc, size=(33, 5)).astype(np.float32) for loc in range(3)]
    for m, p in zip(matrices, split(st.unit_partials([tf.constant(m) for m in matrices]))):
        np.testing.assert_allclose(np.asarray(p["mean"]), m.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(p["m2"]) / 33, m.var(axis=0), rtol=1e-4)
        np.testing.assert_array_equal(np.asarray(p["count"]), [33] * 5)


@pytest.mark.parametrize(
    "name, values, expected",
    [
        # sigmoid: y(1-y) < 0.05/4 <=> y < 0.01266 or y > 0.98734
        ("sigmoid", [0.005, 0.0127, 0.5, 0.99, 0.98], 2),
        # tanh: 1 - y^2 < 0.05 <=> |y| > 0.97468
        ("tanh", [-0.99, -0.97, 0.0, 0.975, 0.5], 2),
        ("hard_sigmoid", [0.0, 1.0, 0.5, 0.999], 2),
        # selu: y < 0 and y + 1.7581 < 0.05 * 1.7581 <=> y < -1.6702
        ("selu", [-1.7, -1.6, 0.0, 3.0], 1),
        # elu: y + 1 < 0.05 <=> y < -0.95
        ("elu", [-0.96, -0.94, 2.0], 1),
    ],
)
def test_saturated_count_uses_the_derivative(name, values, expected):
    rule = activations.by_name(name).saturated
    rows = st.as_units(tf.constant(values)[:, None])
    assert float(np.sum(st.saturated_count(rows, rule, 0.05))) == expected


def test_peaks_per_last_axis_tell_dead_units():
    y = np.zeros((4, 3, 5), np.float32)
    y[1, 2, 0] = 1.0
    y[:, :, 4] = 2.0
    (p,) = split(st.unit_partials([st.as_units(tf.constant(y))]))
    np.testing.assert_array_equal(np.asarray(p["peak"]), [1, 0, 0, 0, 2])


def test_squared_norms_of_tensors_of_several_shapes():
    tensors = [tf.constant(np.full(shape, v, np.float32)) for shape, v in [((2, 3), 1.0), ((4,), 2.0), ((2, 3), 3.0)]]
    np.testing.assert_allclose([float(n) for n in st.squared_norms(tensors)], [6.0, 16.0, 54.0])


@pytest.mark.parametrize("axis", [-1, 1])
def test_channel_moments_per_channel(axis):
    x = np.random.default_rng(2).normal(size=(16, 3, 4, 5)).astype(np.float32)
    x = x + np.arange(x.shape[axis]).reshape([-1 if a == axis % 4 else 1 for a in range(4)])
    _, partials = layer_moments(x, [axis])
    reduce = tuple(a for a in range(4) if a != axis % 4)
    np.testing.assert_allclose(np.asarray(partials["mean"]), x.mean(axis=reduce), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(partials["m2"]) / np.asarray(partials["count"]), x.var(axis=reduce), rtol=1e-4
    )


def test_finish_turns_fields_into_metrics():
    fields = np.full((2, len(st.FIELDS)), np.nan, np.float32)
    f = st.FIELD
    fields[:, f["out_count"]] = [10, 0]  # The second layer never ran.
    fields[:, f["out_mean"]] = [1.5, 0]
    fields[:, f["out_m2"]] = [20.0, 0]
    fields[:, f["in_count"]] = [10, 0]
    fields[:, f["in_m2"]] = [40.0, 0]
    fields[:, f["kernels_measured"]] = [1, 0]
    fields[:, f["kernel_grad_sq"]] = [9.0, 0]
    fields[:, f["kernel_delta_sq"]] = [0.04, 0]
    fields[:, f["kernel_sq"]] = [4.0, 0]
    window = [np.array([False, True, False]), None]
    metrics = st.finish(fields, np.array([5.0, np.nan]), [np.array([0.0, 3.0, 2.0]), None], window)
    np.testing.assert_allclose(metrics["activation_mean"], [1.5, np.nan])
    np.testing.assert_allclose(metrics["activation_var"], [2.0, np.nan])
    np.testing.assert_allclose(metrics["activation_gain"], [0.5, np.nan])
    np.testing.assert_allclose(metrics["gradient_norm"], [3.0, np.nan])
    np.testing.assert_allclose(metrics["update_ratio"], [0.1, np.nan])
    np.testing.assert_allclose(metrics["saturation_fraction"], [0.5, np.nan])
    np.testing.assert_allclose(metrics["dead_units"], [1, np.nan])
    np.testing.assert_allclose(metrics["dead_fraction"], [1 / 3, np.nan])
    np.testing.assert_allclose(metrics["dead_units_window"], [1, np.nan])
    np.testing.assert_array_equal(window[0], [False, True, True])
