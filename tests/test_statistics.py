"""The pure statistics functions against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from gradwatch import activations
from gradwatch import statistics as st


def test_moments_match_numpy_and_skip_nonfinite():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 7)).astype(np.float32)
    x[0, 0], x[5, 3] = np.nan, np.inf
    m, nonfinite = st.moments(tf.constant(x))
    finite = x[np.isfinite(x)].astype(np.float64)
    assert nonfinite.numpy() == 2
    assert m.count.numpy() == finite.size
    np.testing.assert_allclose(m.mean.numpy(), finite.mean(), rtol=1e-5)
    np.testing.assert_allclose(st.variance(m).numpy(), finite.var(), rtol=1e-5)


def test_moments_of_float16_do_not_overflow():
    # 300**2 overflows float16 (max 65504); the statistics run in float32.
    x = tf.constant([[300.0, -300.0]], dtype=tf.float16)
    m, _ = st.moments(x)
    assert st.variance(m).numpy() == pytest.approx(90000.0)


def test_merge_moments_equals_pooled_statistics():
    data = np.random.default_rng(1).normal(1e3, 0.5, size=1000).astype(np.float32)
    a, _ = st.moments(tf.constant(data[:300]))
    b, _ = st.moments(tf.constant(data[300:]))
    merged = st.merge_moments(a, b)
    # Large mean, small spread: a naive sum of squares would lose it all.
    np.testing.assert_allclose(st.variance(merged).numpy(), data.astype(np.float64).var(), rtol=1e-3)
    np.testing.assert_allclose(merged.count.numpy(), 1000)
    empty = st.Moments(0.0, 0.0, 0.0)
    np.testing.assert_allclose(np.array(st.merge_moments(empty, a)), np.array(a))


def test_empty_moments_are_nan():
    empty = st.Moments(tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
    assert np.isnan(st.variance(empty).numpy())
    assert np.isnan(st.mean(empty).numpy())


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
    count = st.saturated_count(tf.constant(values), rule, 0.05)
    assert count.numpy() == expected


def test_unit_activity_counts_per_last_axis():
    y = np.zeros((4, 3, 5), np.float32)
    y[1, 2, 0] = 1.0
    y[:, :, 4] = 2.0
    activity = st.unit_activity(tf.constant(y), 0.0).numpy()
    np.testing.assert_array_equal(activity, [1, 0, 0, 0, 12])


def test_channel_moments_per_channel():
    x = np.random.default_rng(2).normal(size=(16, 4, 4, 3)).astype(np.float32)
    m = st.channel_moments(tf.constant(x), [-1])
    np.testing.assert_allclose(m.mean.numpy(), x.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(st.variance(m).numpy(), x.var(axis=(0, 1, 2)), rtol=1e-4)

