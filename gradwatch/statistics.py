"""What is measured: small, pure statistics of one tensor, computed on the device.

Every function here takes tensors and returns tensors; none touches a layer, a
variable or the host. They run inside the compiled train step, always in
float32 (so that mixed-precision activations neither overflow in sums of
squares nor underflow to zero variance), and over finite elements only, with
the non-finite ones counted separately.

Moments are kept as `(count, mean, m2)` (m2 = sum of squared deviations from
the mean), which merge exactly across several calls of a shared layer or
several batches (Chan et al.'s parallel algorithm) without the cancellation
of a naive sum of squares.
"""

import collections

import tensorflow as tf

Moments = collections.namedtuple("Moments", ["count", "mean", "m2"])
Moments.__doc__ = """Count, mean and sum of squared deviations (scalar tensors)."""


def as_float32(x):
    return tf.cast(x, tf.float32)


def _local(values):
    return values


def moments(x, all_sum=None):
    """Moments of every finite element of `x`, and its non-finite count.

    Args:
        x: A float tensor of any shape.
        all_sum: Optional function summing a tensor over every replica of a
            distributed step (`ReplicaContext.all_reduce`). With it the
            moments describe the global batch: the mean from summed counts
            and sums, then the squared deviations from that global mean
            (two passes, exact, no cancellation).

    Returns:
        `(moments, nonfinite)`: a `Moments` of float32 scalars and a float32
        scalar count of NaN/Inf elements.

    Example:

    >>> m, bad = moments(tf.constant([1.0, 3.0, float("nan")]))
    >>> float(m.count), float(m.mean), float(m.m2), float(bad)
    (2.0, 2.0, 2.0, 1.0)
    """
    x = as_float32(x)
    finite = tf.math.is_finite(x)
    count = tf.reduce_sum(as_float32(finite))
    total = tf.reduce_sum(tf.where(finite, x, 0.0))
    size = as_float32(tf.size(x))
    if all_sum is not None:
        # One all-reduce for the three partial sums.
        count, total, size = tf.unstack(all_sum(tf.stack([count, total, size])))
    mean = tf.math.divide_no_nan(total, count)
    m2 = tf.reduce_sum(tf.where(finite, tf.square(x - mean), 0.0))
    if all_sum is not None:
        m2 = all_sum(m2)
    return Moments(count, mean, m2), size - count


def merge_moments(a, b):
    """Pools two `Moments` as if computed over the union of their data.

    Args:
        a: Moments of the first set (all zeros for an empty set).
        b: Moments of the second set.

    Returns:
        The pooled `Moments`.
    """
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + tf.math.divide_no_nan(delta * b.count, count)
    m2 = a.m2 + b.m2 + tf.math.divide_no_nan(
        delta * delta * a.count * b.count, count
    )
    return Moments(count, mean, m2)


def variance(m):
    """Population variance of a `Moments`; NaN for an empty set."""
    return _nan_if_empty(m.count, m.m2 / tf.maximum(m.count, 1.0))


def mean(m):
    """Mean of a `Moments`; NaN for an empty set."""
    return _nan_if_empty(m.count, m.mean)


def _nan_if_empty(count, value):
    return tf.where(count > 0.0, value, float("nan"))


def saturated_count(y, is_saturated, threshold):
    """Number of finite elements of `y` in the flat region of its nonlinearity.

    Args:
        y: The nonlinearity's output.
        is_saturated: `(y, threshold) -> bool tensor`, from
            `gradwatch.activations`.
        threshold: Fraction of the derivative's maximum below which an element
            counts as saturated.

    Returns:
        A float32 scalar.
    """
    y = as_float32(y)
    flat = tf.logical_and(is_saturated(y, threshold), tf.math.is_finite(y))
    return tf.reduce_sum(as_float32(flat))


def unit_activity(y, floor):
    """Per-unit count of elements away from the activation's floor.

    A unit is one feature or channel: the last axis. A count of 0 means the
    unit sat at its floor for every example and position: it is dead on this
    batch.

    Args:
        y: The nonlinearity's output, shape `[..., units]`.
        floor: The activation's floor value (0 for ReLU).

    Returns:
        A float32 vector of length `units`.
    """
    y = as_float32(y)
    active = as_float32(tf.not_equal(y, floor))
    axes = list(range(len(y.shape) - 1))
    return tf.reduce_sum(active, axis=axes) if axes else active


def channel_moments(x, channel_axes, all_sum=None):
    """Per-channel moments over the batch, as BatchNormalization sees them.

    Args:
        x: The BatchNormalization layer's input.
        channel_axes: The axes that index channels (the layer's `axis`).
        all_sum: Optional cross-replica sum, as for `moments`.

    Returns:
        A `Moments` whose fields have the channel shape.
    """
    all_sum = all_sum or _local
    x = as_float32(x)
    rank = len(x.shape)
    channel_axes = [a % rank for a in channel_axes]
    reduce_axes = [a for a in range(rank) if a not in channel_axes]
    sums = tf.reduce_sum(x, axis=reduce_axes)
    count = as_float32(tf.size(x)) / as_float32(tf.size(sums))
    count, sums = all_sum(count), all_sum(sums)
    mean = sums / count
    m2 = all_sum(tf.reduce_sum(tf.square(x - mean), axis=reduce_axes))
    return Moments(tf.fill(tf.shape(mean), count), mean, m2)


def squared_norm(tensors):
    """Sum of squares of every element of every tensor, in float32."""
    total = tf.constant(0.0)
    for t in tensors:
        total += tf.reduce_sum(tf.square(as_float32(t)))
    return total
