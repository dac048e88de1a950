"""What is measured: small, pure statistics functions.

Two halves:

- **On the device** (`unit_partials`, `pool`, `pool_partials`, ...):
  reductions inside the compiled train step, written with `keras.ops` so
  that they serve every Keras backend. Each watched tensor is viewed as a
  `[rows, units]` matrix (units = the last axis: features or channels) and
  reduced over its rows to a few per-unit vectors (count, shifted sums for
  the moments, non-finite count, peak). Everything coarser (a layer's
  moments, BatchNorm's channel averages, a shared layer's several calls,
  several replicas) is pooled from those small vectors, exactly (Chan et
  al.'s parallel algorithm), never by reading the tensor again.
- **On the host** (`finish`): NumPy arithmetic that turns the few numbers per
  layer the step returns into the metrics of
  `gradwatch_tensorboard.metadata.METRICS`.

All statistics are float32, over finite elements only (the non-finite ones
are counted apart), so that mixed-precision tensors neither overflow in sums
of squares nor underflow to zero variance.
"""

import collections

import keras
import numpy as np
from keras import ops

Moments = collections.namedtuple("Moments", ["count", "mean", "m2"])
Moments.__doc__ = """Count, mean and sum of squared deviations from the mean
(m2). Pooled exactly by `pool`."""

MOMENT_FIELDS = ("count", "mean", "m2")


# Matrices of at most STACK_BELOW elements (at STACK_ROWS_BELOW rows, a
# guess at the batch when it is not known) are stacked with others of their
# shape; larger ones are reduced each alone (a stack would copy them).
STACK_BELOW = 1 << 18
STACK_ROWS_BELOW = 64


def sum_of_squares(x, axis=None, xla=False):
    """Sum of the squares of `x`'s elements, along `axis` (None: all).

    On TensorFlow without XLA a fused reduction (`l2_loss`,
    `reduce_euclidean_norm`) reads `x` once and writes no tensor of squares:
    on a CPU, memory traffic is what these statistics cost. XLA (and so
    every other backend) fuses the two ops itself.

    Args:
        x: A float tensor.
        axis: The axis to sum along, or None for all.
        xla: Whether this runs in an XLA-compiled function.
    """
    if keras.backend.backend() == "tensorflow" and not xla:
        import tensorflow as tf

        if axis is None:
            return 2.0 * tf.nn.l2_loss(x)
        return tf.square(tf.math.reduce_euclidean_norm(x, axis=axis))
    return ops.sum(ops.square(x), axis=axis)


def as_float32(x):
    return ops.cast(x, "float32")


def as_units(x, unit_axes=None):
    """`x` as a float32 `[rows, units]` matrix.

    Args:
        x: A tensor of any rank with a static shape along `unit_axes`.
        unit_axes: The axes that index units (default: the last one), as
            BatchNormalization's `axis`.

    Returns:
        A 2-D float32 tensor; a scalar is one row of one unit.
    """
    x = as_float32(x)
    rank = len(x.shape)
    if rank == 0:
        return ops.reshape(x, (1, 1))
    axes = sorted(a % rank for a in (unit_axes if unit_axes is not None else [-1]))
    if axes != list(range(rank - len(axes), rank)):
        # Channels not last (rare): move them there once.
        x = ops.transpose(x, [a for a in range(rank) if a not in axes] + axes)
    units = 1
    for size in x.shape[len(x.shape) - len(axes):]:
        units = None if size is None or units is None else units * int(size)
    if units is None:  # Unknown unit count: one unit.
        return ops.reshape(x, (-1, 1))
    return ops.reshape(x, (-1, units))


def unit_partials(matrices, peaks=True, xla=False):
    """Per-unit moments, non-finite counts and peaks of matrices with one
    number of units (one group of `grouped_unit_partials`).

    Args:
        matrices: float32 `[rows, units]` tensors with one number of units
            (`as_units`), for example every watched layer's output of a deep
            MLP.
        peaks: Whether to find each unit's peak (one more read).
        xla: Whether this runs in an XLA-compiled function.

    Returns:
        A dict of `[matrices, units]` tensors: `count`, `mean`, `m2` (see
        `Moments`, over finite elements), `nonfinite`, and `peak` (the
        largest element, NaN counting as +Inf; only with `peaks`).

    Example:

    >>> p = unit_partials([ops.convert_to_tensor([[1.0], [3.0], [np.nan]])])
    >>> [float(p[k][0, 0]) for k in ("count", "mean", "m2", "nonfinite")]
    [2.0, 2.0, 2.0, 1.0]
    """
    return grouped_unit_partials([(matrices, peaks)], xla)[0]


def grouped_unit_partials(groups, xla=False):
    """`unit_partials` of several groups of matrices, with one check for
    non-finite values for all of them.

    The sums are shifted by each unit's first value (the variance without a
    naive sum of squares' cancellation), and the squares are summed by a fused
    reduction: each matrix is read three times (its shifted copy, two sums)
    and a unit's peak once more. Only when some sum comes out non-finite are
    the matrices read again, with the NaN and Inf elements masked out and
    counted. One check, so one `cond` in the traced step, however many
    groups: each `cond` costs tracing time.

    Args:
        groups: `(matrices, peaks)` pairs, as `unit_partials` takes them.
        xla: Whether this runs in an XLA-compiled function.

    Returns:
        One dict per group, as `unit_partials` returns.
    """
    fast = [_finite_sums(m, peaks, xla) for m, peaks in groups]
    ok = ops.all(ops.stack([
        ops.all(ops.logical_and(ops.isfinite(sums[2]), ops.isfinite(sums[3])))
        for sums in fast
    ]))
    chosen = ops.cond(
        ok, lambda: fast, lambda: [_masked_sums(m, peaks) for m, peaks in groups]
    )
    results = []
    for (count, shift, total, squares, peak), (_, peaks), fast_sums in zip(chosen, groups, fast):
        rows = fast_sums[0]  # Every element counted.
        safe = ops.maximum(count, 1.0)
        partials = {
            "count": count,
            "mean": shift + total / safe,
            "m2": ops.maximum(squares - ops.square(total) / safe, 0.0),
            "nonfinite": rows - count,
        }
        if peaks:
            partials["peak"] = peak
        results.append(partials)
    return results


def _finite_sums(matrices, peaks, xla):
    """`(count, shift, total, squares, peak)`, `[matrices, units]` each,
    valid when every element is finite.

    Matrices of one static shape are stacked: one op per reduction for all
    of them rather than one per matrix, since each op added to the traced
    step costs tracing time on the first `fit` (the stack costs a copy, so
    only small matrices are stacked).
    """
    by_shape = {}
    for i, m in enumerate(matrices):
        shape = tuple(m.shape)
        by_shape.setdefault(shape if _stackable(m) else i, []).append(i)
    parts = []
    for indices in by_shape.values():
        group = [matrices[i] for i in indices]

        def stacked_sums(group=group):
            x = ops.stack(group)  # [n, rows, units]
            shift = x[:, :1, :]
            # Summed as is: a sum of the matrix would lose precision.
            shifted = x - shift
            total = ops.sum(shifted, axis=1)
            squares = sum_of_squares(shifted, axis=1, xla=xla)
            peak = ops.max(x, axis=1) if peaks else ops.zeros_like(total)
            count = ops.ones_like(total) * as_float32(ops.shape(x)[1])
            return count, shift[:, 0, :], total, squares, peak

        if len(group) == 1 or group[0].shape[0] is not None:
            parts.append((indices, stacked_sums()))
            continue
        # Rows unknown until the step runs (the batch): matrices of one
        # static shape may still differ (a layer called on two batch
        # sizes). Then these NaN sums send every group down the masked
        # path, which takes any number of rows.
        rows = [ops.shape(m)[0] for m in group]
        agree = ops.all(ops.stack([ops.equal(r, rows[0]) for r in rows[1:]]))
        units = group[0].shape[1]
        unknown = tuple(ops.full((len(group), units), np.nan) for _ in range(5))
        parts.append((indices, ops.cond(agree, stacked_sums, lambda: unknown)))
    if len(parts) == 1:
        return parts[0][1]
    order = [i for indices, _ in parts for i in indices]
    inverse = np.argsort(order)
    return tuple(
        ops.take(ops.concatenate([p[1][f] for p in parts], axis=0), inverse, axis=0)
        for f in range(5)
    )


def _masked_sums(matrices, peaks):
    """The same over finite elements only. Rare (a NaN or Inf somewhere):
    one concatenation and segment sums, a few ops, not a few per matrix."""
    x = ops.concatenate(matrices, axis=0)
    ids, starts = _row_layout(matrices, range(len(matrices)))
    first = ops.take(x, starts, axis=0)
    shift = ops.where(ops.isfinite(first), first, 0.0)
    finite = ops.isfinite(x)
    shifted = ops.where(finite, x - ops.take(shift, ids, axis=0), 0.0)

    def per_matrix(values, reduce=ops.segment_sum):
        return reduce(values, ids, num_segments=len(matrices))

    peak = ops.zeros_like(shift)
    if peaks:
        peak = per_matrix(ops.where(ops.isnan(x), np.inf, x), ops.segment_max)
    count = per_matrix(as_float32(finite))
    return count, shift, per_matrix(shifted), per_matrix(ops.square(shifted)), peak


def saturated_count(rows, is_saturated, threshold):
    """Per-unit count of finite elements in the nonlinearity's flat region.

    Args:
        rows: The nonlinearity's output as `[rows, units]`.
        is_saturated: `(y, threshold) -> bool tensor`, from
            `gradwatch.activations`.
        threshold: Fraction of the derivative's maximum below which an
            element counts as saturated.

    Returns:
        A float32 `[units]` vector.
    """
    flat = ops.logical_and(is_saturated(rows, threshold), ops.isfinite(rows))
    return ops.sum(as_float32(flat), axis=0)


def signed_log_bins(x, decades):
    """Each element's signed log-magnitude bin (int32, `x`'s shape).

    The bins, in order: the negative decades (largest magnitude first),
    exact zero, the positive decades, then NaN and Inf together
    (`gradwatch_tensorboard.metadata.histogram_bins`). A non-zero magnitude
    below the first decade falls in it, one above the last in the last.

    Args:
        x: A float32 tensor.
        decades: `(low, high)`: the decades span 10**low to 10**high.
    """
    return ops.where(
        ops.isfinite(x),
        ops.cast(ops.digitize(x, _signed_log_boundaries(decades)), "int32"),
        2 * (decades[1] - decades[0]) + 1,
    )


def _signed_log_boundaries(decades):
    """The float32 edges between the finite bins, ascending, for one
    search (`digitize`: bins[i-1] <= x < bins[i]) that finds each element's
    bin, sign, decade and clipping at once.

    A negative decade holds -10**(k+1) < x <= -10**k: its edges are the
    float32 just above -10**k, so that left-closed bins close on the right
    magnitude. Zero's bin runs up to float32's smallest normal number (a
    denormal may read as zero anyway where the CPU flushes them).
    """
    low, high = decades
    powers = [np.float32(10.0 ** k) for k in range(high - 1, low, -1)]  # 1e3 ... 1e-7
    negative = [float(np.nextafter(-p, np.float32(0))) for p in powers]
    positive = [float(p) for p in reversed(powers)]
    return negative + [0.0, float(np.finfo(np.float32).tiny)] + positive


def signed_log_histograms(tensors, segments, count, decades, scale=None, xla=False):
    """Counts of several tensors' elements in signed log-magnitude bins
    (`signed_log_bins`), each tensor counted into its segment's row.

    Small tensors are binned together, after one concatenation: a handful
    of ops for all of them rather than a handful each, since every op added
    to the traced step costs tracing (and compiling) time on the first
    `fit`. Large ones, whose concatenation would copy much, are binned each
    alone.

    Args:
        tensors: Float tensors of any shapes.
        segments: Per tensor, the row it counts into (several tensors may
            share one: a shared layer's calls).
        count: The number of rows.
        decades: `(low, high)`: the decades span 10**low to 10**high.
        scale: Optional scalar every element is divided by first (a loss
            scale).
        xla: Whether this runs in an XLA-compiled function.

    Returns:
        A float32 `[count, 2 * (high - low) + 2]` matrix.

    Example:

    >>> signed_log_histograms([np.array([-3.0, 0.0, 0.5, np.nan])], [0], 1, (-1, 1))
    [[1, 0, 1, 1, 0, 1]]  # -1e0, -1e-1, 0, +1e-1, +1e0, non-finite
    """
    width = 2 * (decades[1] - decades[0]) + 2
    flats = [ops.reshape(as_float32(t), [-1]) for t in tensors]
    small = [i for i, t in enumerate(tensors) if _stackable(t)]
    parts = [([i], flats[i]) for i in range(len(flats)) if i not in small]
    if small:
        together = flats[small[0]] if len(small) == 1 else ops.concatenate(
            [flats[i] for i in small], axis=0
        )
        parts.append((small, together))
    total = None
    for members, x in parts:
        if scale is not None:
            x = x / scale
        bins = signed_log_bins(x, decades)
        if len(members) == 1:  # One tensor, one row: an offset.
            indices = bins + segments[members[0]] * width
        else:
            rows, _ = _row_layout([flats[i] for i in members], [segments[i] for i in members])
            indices = ops.convert_to_tensor(rows) * width + bins
        counted = count_indices(indices, count * width, xla)
        total = counted if total is None else total + counted
    if total is None:
        return ops.zeros((count, width))
    return ops.reshape(total, (count, width))


def unit_counts(matrices, segments, count, is_in, width, floors=None):
    """Per segment and unit, how many finite elements `is_in` holds for, and
    how many are finite (their quotient is the unit's share; counts, so that
    calls and replicas pool by summing).

    Matrices with the same number of units are counted together, after one
    concatenation of their rows (see `signed_log_histograms` for why).

    Args:
        matrices: `[rows, units]` matrices, at most `width` units each.
        segments: Per matrix, the row of the result it counts into.
        count: The number of rows of the result.
        is_in: `(rows, floors) -> bool tensor` of `rows`' shape, where
            `floors` is a `[rows, 1]` column of the rows' floors (or None).
        width: The number of units of the result; a matrix with fewer
            leaves the rest of its row at zero (so a share of NaN).
        floors: Optional, per segment, a number `is_in` compares to.

    Returns:
        Two float32 `[count, width]` matrices: `(inside, finite)`.
    """
    inside = ops.zeros((count, width))
    finite = ops.zeros((count, width))
    by_units = {}
    for i, m in enumerate(matrices):
        by_units.setdefault(int(m.shape[-1]), []).append(i)
    for units, members in by_units.items():
        group = [matrices[i] for i in members]
        x = group[0] if len(group) == 1 else ops.concatenate(group, axis=0)
        rows, _ = _row_layout(group, [segments[i] for i in members])
        row_floors = None
        if floors is not None:
            row_floors = ops.take(np.asarray(floors, "float32"), rows, axis=0)[:, None]
        is_finite = ops.isfinite(x)
        inside_here = as_float32(ops.logical_and(is_in(x, row_floors), is_finite))
        pad = [[0, 0], [0, width - units]]

        def per_segment(values):
            return ops.pad(ops.segment_sum(values, rows, num_segments=count), pad)

        inside = inside + per_segment(inside_here)
        finite = finite + per_segment(as_float32(is_finite))
    return inside, finite


def count_indices(indices, length, xla=False):
    """How many times each of `0 .. length - 1` occurs in `indices`, as a
    float32 vector.

    On TensorFlow without XLA, `bincount` counts several times faster than a
    segment sum of ones; XLA (and so every other backend) compiles the
    segment sum into the same scatter-add.
    """
    if keras.backend.backend() == "tensorflow" and not xla:
        import tensorflow as tf

        # The raw op: `tf.math.bincount` adds a dozen ops (its checks) to
        # the traced step for each call.
        return tf.raw_ops.Bincount(
            arr=indices, size=length, weights=tf.zeros([0], tf.float32)
        )
    return ops.segment_sum(ops.ones_like(indices, "float32"), indices, num_segments=length)


def _stackable(x):
    """Whether `x` is small enough to be stacked or concatenated with others
    (`STACK_BELOW`): its elements per row (the first axis) are static and
    few."""
    size = 1
    for n in x.shape[1:]:
        if n is None:
            return False
        size *= int(n)
    return size * STACK_ROWS_BELOW <= STACK_BELOW


def _row_layout(pieces, labels):
    """`(ids, starts)` of `pieces` concatenated along axis 0: per row, the
    label of the piece it came from (int32), and where each piece starts."""
    static = [p.shape[0] for p in pieces]
    labels = np.asarray(list(labels), "int32")
    if None not in static:  # Static shapes (JAX, XLA): a repeat JAX can trace.
        return np.repeat(labels, static), np.cumsum(static) - np.asarray(static)
    # Rows known only as the step runs (TensorFlow).
    sizes = ops.stack([ops.cast(ops.shape(p)[0], "int32") for p in pieces])
    return ops.repeat(ops.convert_to_tensor(labels), sizes), ops.cumsum(sizes) - sizes


def pool(count, mean, m2, axis=0):
    """Moments of the union of several sets, exactly (Chan et al.).

    Args:
        count: Counts of the sets, stacked along `axis`.
        mean: Their means.
        m2: Their sums of squared deviations.
        axis: The axis that indexes the sets.

    Returns:
        The pooled `Moments`.
    """
    total = ops.sum(count, axis=axis)
    pooled_mean = ops.sum(count * mean, axis=axis) / ops.maximum(total, 1.0)
    spread = ops.sum(
        count * ops.square(mean - ops.expand_dims(pooled_mean, axis)), axis=axis
    )
    return Moments(total, pooled_mean, ops.sum(m2, axis=axis) + spread)


# Partials pooled by their maximum; the rest (counts) add up.
PEAK_FIELDS = ("peak", "active")


def pool_partials(stacked):
    """Pools dicts of partials stacked along axis 0 (calls, replicas).

    Moments merge with `pool`; peaks and activity take the maximum; every
    other entry is a count and adds up.

    Args:
        stacked: A dict of `[sets, units]` tensors, as `unit_partials`.

    Returns:
        A dict of `[units]` tensors.
    """
    pooled = {}
    if "count" in stacked:
        pooled.update(zip(MOMENT_FIELDS, pool(*(stacked[k] for k in MOMENT_FIELDS))))
    for name, value in stacked.items():
        if name in PEAK_FIELDS:
            pooled[name] = ops.max(value, axis=0)
        elif name not in pooled:
            pooled[name] = ops.sum(value, axis=0)
    return pooled


def stack_partials(partials):
    """Stacks a list of partials dicts (same keys) along a new axis 0."""
    return {k: ops.stack([p[k] for p in partials]) for k in partials[0]}


def pool_rows(rows):
    """Pools rows of `(count, mean, m2, nonfinite)` along axis -2.

    Args:
        rows: A `[..., sets, 4]` tensor.

    Returns:
        `[..., 4]`: the union's moments and non-finite count.
    """
    moments = pool(rows[..., 0], rows[..., 1], rows[..., 2], axis=-1)
    return ops.stack([*moments, ops.sum(rows[..., 3], axis=-1)], axis=-1)


def squared_norms(tensors, xla=False):
    """The sum of squares of each tensor, in float32.

    Args:
        tensors: A list of tensors.
        xla: Whether this runs in an XLA-compiled function.

    Returns:
        A list of float32 scalars, in the order of `tensors`.
    """
    return [sum_of_squares(as_float32(t), xla=xla) for t in tensors]


def channel_statistics(channels, moving_mean_before, moving_var_before, epsilon):
    """BatchNormalization's batch statistics per channel.

    Args:
        channels: Per-channel partials of the layer's input (`count`, `mean`,
            `m2` vectors).
        moving_mean_before: The moving mean the step started from.
        moving_var_before: The moving variance the step started from.
        epsilon: The layer's epsilon (a number, or one per channel).

    Returns:
        `(batch_mean, batch_var, skew)` float32 vectors (NaN for a channel
        that saw no finite value): skew is |batch mean - moving mean| /
        sqrt(moving variance + epsilon).
    """
    count = channels["count"]
    nan = ops.full_like(count, np.nan)
    batch_mean = ops.where(count > 0.0, channels["mean"], nan)
    batch_var = ops.where(count > 0.0, channels["m2"] / ops.maximum(count, 1.0), nan)
    skew = ops.abs(batch_mean - ops.reshape(as_float32(moving_mean_before), (-1,))) / ops.sqrt(
        ops.reshape(as_float32(moving_var_before), (-1,)) + epsilon
    )
    return batch_mean, batch_var, skew


# -- on the host ----------------------------------------------------------------

# What the step returns for each watched layer, in this order, then one
# saturated count per saturation threshold. NaN where a field does not apply.
FIELDS = (
    "out_count", "out_mean", "out_m2", "out_nonfinite",
    "in_count", "in_mean", "in_m2",
    "grad_count", "grad_mean", "grad_m2", "grad_nonfinite",
    "kernels_measured", "kernel_grad_sq", "kernel_delta_sq", "kernel_sq",
    "kernel_drift_sq", "kernel_initial_sq",
    "bn_batch_mean", "bn_batch_var", "bn_skew",
    "bn_moving_mean", "bn_moving_var", "bn_gamma", "bn_beta",
)
FIELD = {name: i for i, name in enumerate(FIELDS)}


def _variance(count, m2):
    return np.where(count > 0, m2 / np.maximum(count, 1), np.nan)


def finish(fields, saturated, activity, window):
    """The metrics of one recorded step, from what the step returned.

    Args:
        fields: float32 `[layers, len(FIELDS)]`.
        saturated: `[layers]` saturated element counts (NaN for layers
            without a saturating nonlinearity).
        activity: Per layer, 1 for each unit that left the activation's
            floor on this batch, 0 for each that did not (dead), or None for
            layers without a floor.
        window: Per layer, a bool vector of units active on some recorded
            batch of the window so far (updated in place), or None.

    Returns:
        A dict of metric name to float32 `[layers]` vector (every metric of
        `gradwatch_tensorboard.metadata.METRICS`).
    """
    f = {name: fields[:, i].astype(np.float64) for name, i in FIELD.items()}
    layers = fields.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        activation_var = _variance(f["out_count"], f["out_m2"])
        measured = f["kernels_measured"] > 0
        dead = np.full(layers, np.nan)
        dead_fraction = np.full(layers, np.nan)
        dead_window = np.full(layers, np.nan)
        for i, (units, seen) in enumerate(zip(activity, window)):
            if units is None:
                continue
            seen |= units > 0
            dead[i] = np.count_nonzero(units == 0)
            dead_fraction[i] = dead[i] / units.size
            dead_window[i] = np.count_nonzero(~seen)
        metrics = {
            "activation_mean": np.where(f["out_count"] > 0, f["out_mean"], np.nan),
            "activation_var": activation_var,
            "activation_gain": activation_var / _variance(f["in_count"], f["in_m2"]),
            "gradient_var": _variance(f["grad_count"], f["grad_m2"]),
            "gradient_norm": np.where(measured, np.sqrt(f["kernel_grad_sq"]), np.nan),
            "update_ratio": np.where(
                measured, np.sqrt(f["kernel_delta_sq"]) / np.sqrt(f["kernel_sq"]), np.nan
            ),
            # A kernel that starts at zero has no scale to drift against.
            "distance_from_init": np.where(
                measured & (f["kernel_initial_sq"] > 0),
                np.sqrt(f["kernel_drift_sq"]) / np.sqrt(f["kernel_initial_sq"]), np.nan,
            ),
            "saturation_fraction": saturated / f["out_count"],
            "dead_units": dead,
            "dead_fraction": dead_fraction,
            "dead_units_window": dead_window,
            "bn_batch_mean": f["bn_batch_mean"],
            "bn_batch_var": f["bn_batch_var"],
            "bn_moving_mean": f["bn_moving_mean"],
            "bn_moving_var": f["bn_moving_var"],
            "bn_gamma": f["bn_gamma"],
            "bn_beta": f["bn_beta"],
            "bn_skew": f["bn_skew"],
            "activation_nonfinite": f["out_nonfinite"],
            # No gradient reached the layer at all: nothing to count.
            "gradient_nonfinite": np.where(
                f["grad_count"] + f["grad_nonfinite"] > 0, f["grad_nonfinite"], np.nan
            ),
        }
    return {k: v.astype(np.float32) for k, v in metrics.items()}
