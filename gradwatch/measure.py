"""What a recorded step computes from the tensors its taps kept, inside the
train step: every watched layer's statistics, vectorised over layers and
packed into one float32 vector (and, on the host, unpacked again)."""

import numpy as np
from gradwatch_tensorboard import metadata
from keras import ops

from . import statistics as st

_NAN = float("nan")


class Measure:
    """Turns what one trace of the train step kept into one float32 vector:
    per watched layer its `statistics.FIELDS` and saturated counts, then the
    activity of the units of each layer with a floor (`unpack` reads it).

    Args:
        taps: The capture's `LayerTap`s, in its order.
        thresholds: The saturation thresholds to count at, in order.
        replicas: The capture's `Replicas`.
        layout: Per tap, its activity size (0 without a floor).
        xla: Whether the step is XLA-compiled.
    """

    def __init__(self, taps, thresholds, replicas, layout, xla):
        self.taps = taps
        self.thresholds = thresholds
        self.replicas = replicas
        self._layout = layout
        self.xla = xla

    def __call__(self, trace, kernels, before, value_of=None, initial=None):
        """Every watched layer's fields and activity, as one float32 vector.

        Vectorised over layers: a handful of ops per shape of tensor, not per
        layer, so that a deep model's recorded step is not a long string of
        tiny ops (whose dispatch would cost more than their arithmetic).

        Args:
            trace: The `taps.Trace` of this step.
            kernels: The watched kernels, in tap order.
            before: Their values as the step started (for the update ratio).
            value_of: `value_of(variable)`: a variable's value after the
                step's update (by default, its `value`; on JAX, from the
                state the step returns).
            initial: Per kernel, `(value, squared norm)` of its weights when
                first watched (`capture.InitialWeights`), or None.
        """
        value_of = value_of or (lambda variable: variable.value)
        matrices = {}  # (tensor ref, unit axes) -> [rows, units] matrix

        def request(tensor, unit_axes=(-1,)):
            # A layer's input that is another watched layer's output is the
            # same tensor: reduced once.
            tensor = trace.aliases.get(id(tensor), tensor)
            rank = max(len(tensor.shape), 1)
            # By identity: the trace keeps every tensor alive while measured.
            key = (id(tensor), tuple(sorted(a % rank for a in unit_axes)))
            if key not in matrices:
                matrices[key] = st.as_units(tensor, unit_axes)
            return key

        plans = []  # per tap: {"out"|"in"|"grad"|"bn": [keys]}, or None
        for tap in self.taps:
            calls = trace.calls.get(tap)
            plan = None
            if calls:
                plan = {"out": [], "in": [], "grad": [], "bn": []}
                for call in calls:
                    plan["out"].append(request(call.y))
                    if call.x is not None:
                        plan["in"].append(request(call.x))
                        if tap.is_batch_norm:
                            plan["bn"].append(request(call.x, _axes(tap.layer)))
                    plan["grad"] += [request(dy) for dy in call.gradients]
            plans.append(plan)

        peaks = {
            k for tap, plan in zip(self.taps, plans)
            if plan and tap.floor is not None for k in plan["out"]
        }
        reduced = _Reduced(matrices, peaks, self.xla)
        # Per-unit vectors some layers need: activity (a floor) and
        # BatchNorm's channels; saturated counts for saturating layers.
        unit_needs = []  # (tap index, name, [per-call partials dicts])
        saturated = []  # (tap index, threshold index, [per-call counts])
        for i, (tap, plan) in enumerate(zip(self.taps, plans)):
            if plan is None:
                continue
            if tap.floor is not None:
                unit_needs.append((i, "out", [reduced.units(k, ("peak",)) for k in plan["out"]]))
            if plan["bn"]:
                unit_needs.append((i, "bn", [reduced.units(k, st.MOMENT_FIELDS) for k in plan["bn"]]))
            if tap.saturated is not None:
                for j, threshold in enumerate(self.thresholds):
                    saturated.append((i, j, [
                        ops.sum(st.saturated_count(matrices[k], tap.saturated, threshold))
                        for k in plan["out"]
                    ]))
        table, unit_needs, saturated = self._pool_replicas(reduced.table, unit_needs, saturated)

        # Layers called several times (shared) pool their calls.
        rows = {}  # (tap index, "out"|"in"|"grad") -> row of the table
        extra = []
        for i, plan in enumerate(plans):
            for name in ("out", "in", "grad"):
                if plan is None or not plan[name]:
                    continue
                indices = [reduced.row[k] for k in plan[name]]
                if len(indices) == 1:
                    rows[(i, name)] = indices[0]
                else:
                    rows[(i, name)] = len(reduced.row) + len(extra)
                    extra.append(st.pool_rows(ops.take(table, indices, axis=0)))
        nan_row = len(reduced.row) + len(extra)
        table = ops.concatenate([table] + [r[None] for r in extra] + [_nans((1, 4))], 0)

        def column_block(name):
            return ops.take(table, [rows.get((i, name), nan_row) for i in range(len(self.taps))], axis=0)

        out, inp, grad = column_block("out"), column_block("in"), column_block("grad")
        scale = 1.0 if trace.loss_scale is None else trace.loss_scale
        grad = ops.stack(
            [grad[:, 0], grad[:, 1] / scale, grad[:, 2] / (scale * scale), grad[:, 3]], 1
        )
        kernel_block = self._kernel_block(trace, kernels, before, value_of, initial)
        bn_block = self._batch_norm_block(trace, unit_needs, value_of)
        sat_block = self._saturated_block(saturated)
        fields = ops.concatenate(
            [out, inp[:, :3], grad, kernel_block, bn_block, sat_block], axis=1
        )
        activity = self._activity(unit_needs)
        return ops.concatenate([ops.reshape(fields, [-1])] + activity, axis=0)

    def distributions(self, trace):
        """Every watched layer's distributions, as one float32 vector (see
        `unpack_distributions`): per tap, the histograms of its output and
        of dLoss/d(output) (`statistics.signed_log_histograms`), then the
        activity and saturation shares of its first `UNITS_SHOWN` units.

        Vectorised over layers, as `__call__` is. Counts are summed over a
        shared layer's calls and over replicas before shares are taken, so
        they are the global batch's.

        Args:
            trace: The `taps.Trace` of this step.
        """
        decades, shown = metadata.HISTOGRAM_DECADES, metadata.UNITS_SHOWN
        n = len(self.taps)
        if not n:
            return ops.zeros((0,))
        outputs, gradients = [], []  # (tensor, tap index)
        for i, tap in enumerate(self.taps):
            for call in trace.calls.get(tap) or []:
                outputs.append((call.y, i))
                gradients += [(g, i) for g in call.gradients]

        def histograms(pairs, scale=None):
            return st.signed_log_histograms(
                [t for t, _ in pairs], [i for _, i in pairs], n, decades, scale, self.xla
            )

        # Unscaled, as gradient_var is.
        counts = [histograms(outputs), histograms(gradients, trace.loss_scale)]
        # The units shown of every output, once.
        shown_units = [(st.as_units(y)[:, :shown], i) for y, i in outputs]
        active = [(m, i) for m, i in shown_units if self.taps[i].floor is not None]
        counts += st.unit_counts(
            [m for m, _ in active], [i for _, i in active], n,
            lambda rows, floors: rows > floors, shown,
            floors=[0.0 if t.floor is None else t.floor for t in self.taps],
        )
        counts += self._saturated_unit_counts(shown_units, shown)
        counts = self.replicas.sum(counts)
        # Shares: (inside, finite) pairs of activity, then of saturation.
        blocks = [counts[0], counts[1], counts[2] / counts[3], counts[4] / counts[5]]
        # NaN where a layer has no such series: never called, no gradient,
        # no floor, no flat region.
        has = [
            [bool(trace.calls.get(t)) for t in self.taps],
            [any(c.gradients for c in trace.calls.get(t) or []) for t in self.taps],
            [bool(trace.calls.get(t)) and t.floor is not None for t in self.taps],
            [bool(trace.calls.get(t)) and self._saturates(t) for t in self.taps],
        ]
        blocks = [ops.where(np.array(h)[:, None], b, _NAN) for h, b in zip(has, blocks)]
        return ops.reshape(ops.concatenate(blocks, axis=1), [-1])

    def _saturated_unit_counts(self, shown_units, shown):
        """`(inside, finite)` `[taps, shown]` counts of the shown units in
        their nonlinearity's flat region, one `unit_counts` per kind of
        nonlinearity."""
        count = len(self.taps)
        inside, finite = ops.zeros((count, shown)), ops.zeros((count, shown))
        by_kind = {}
        for m, i in shown_units:
            if self._saturates(self.taps[i]):
                by_kind.setdefault(self.taps[i].saturated, []).append((m, i))
        threshold = min(self.thresholds) if self.thresholds else None
        for saturated, pairs in by_kind.items():
            more = st.unit_counts(
                [m for m, _ in pairs], [i for _, i in pairs], count,
                lambda rows, _, saturated=saturated: saturated(rows, threshold), shown,
            )
            inside, finite = inside + more[0], finite + more[1]
        return [inside, finite]

    def _saturates(self, tap):
        """Whether the tap's units have a flat region to count in (at the
        smallest saturation threshold)."""
        return tap.saturated is not None and bool(self.thresholds)

    def _pool_replicas(self, table, unit_needs, saturated):
        """Gathers every replica's numbers and pools them: moments exactly
        (Chan), peaks by their maximum, counts by their sum."""
        if not self.replicas.distributed:
            return table, unit_needs, saturated
        pieces = [ops.reshape(table, [-1])]
        for _, _, calls in unit_needs:
            pieces += [v for p in calls for v in p.values()]
        pieces += [c[None] for _, _, counts in saturated for c in counts]
        gathered = self.replicas.gather(ops.concatenate(pieces, 0))  # [replicas, k]
        size = int(table.shape[0]) * 4
        offset = size
        per_replica = ops.reshape(gathered[:, :size], [self.replicas.count, -1, 4])
        table = st.pool_rows(ops.transpose(per_replica, [1, 0, 2]))
        pooled_needs = []
        for i, name, calls in unit_needs:
            pooled_calls = []
            for p in calls:
                stacked = {}
                for field, value in p.items():
                    width = int(value.shape[0])
                    stacked[field] = gathered[:, offset:offset + width]
                    offset += width
                pooled_calls.append(st.pool_partials(stacked))
            pooled_needs.append((i, name, pooled_calls))
        pooled_saturated = []
        for i, j, counts in saturated:
            pooled_saturated.append(
                (i, j, [ops.sum(gathered[:, offset + n]) for n in range(len(counts))])
            )
            offset += len(counts)
        return table, pooled_needs, pooled_saturated

    def _kernel_block(self, trace, kernels, values_before, value_of, initial=None):
        """`[taps, 6]`: whether measured, then the squared norms of the
        kernels' gradients, updates, values before the update, distances
        from their initial values, and initial values (NaN where a kernel's
        initial value is not known)."""
        measured = [k for k in kernels if id(k) in trace.kernel_gradients]
        received = [trace.kernel_gradients[id(k)] for k in measured]
        gradients = self.replicas.sum([r.gradient for r in received])
        before_of = {id(k): b for k, b in zip(kernels, values_before)}
        before = [ops.reshape(before_of[id(k)], k.shape) for k in measured]
        initial_of = dict(zip(map(id, kernels), initial or [None] * len(kernels)))
        first = [initial_of[id(k)] for k in measured]
        if measured:
            # Each kernel's gradient carries its own optimizer's loss scale.
            scales = ops.stack([
                ops.ones(()) if r.scale is None else r.scale for r in received
            ])
            after = [value_of(k) for k in measured]
            updates = [a - b for a, b in zip(after, before)]
            known = [n for n, f in enumerate(first) if f is not None]
            drifts = _nans((len(measured),))
            if known:
                drifts = ops.scatter_update(drifts, [[n] for n in known], ops.stack(
                    st.squared_norms([after[n] - first[n][0] for n in known], self.xla)
                ))
            initial_sq = np.array(
                [np.nan if f is None else f[1] for f in first], "float32"
            )
            norms = ops.stack(
                [
                    ops.stack(st.squared_norms(gradients, self.xla)) / (scales * scales),
                    ops.stack(st.squared_norms(updates, self.xla)),
                    ops.stack(st.squared_norms(before, self.xla)),
                    drifts,
                    ops.convert_to_tensor(initial_sq),
                ],
                axis=1,
            )
        # A step the loss scaler skipped updated nothing: unmeasured. One
        # check per optimizer's gradients, however many kernels it applied.
        finite = {}
        for r in received:
            if r.batch is not None and id(r.batch) not in finite:
                finite[id(r.batch)] = st.as_float32(ops.all(ops.stack(
                    [ops.all(ops.isfinite(g)) for g in r.batch]
                )))
        applied = [
            ops.ones(()) if r.batch is None else finite[id(r.batch)]
            for r in received
        ]
        index = {id(k): n for n, k in enumerate(measured)}
        complete, owner, ordered = [], [], []  # (tap, kernel row) pairs
        for i, tap in enumerate(self.taps):
            mine = [index.get(id(k)) for k in tap.kernels]
            complete.append(bool(mine) and None not in mine)
            if complete[-1]:
                owner += [i] * len(mine)
                ordered += mine
        if not ordered:
            return ops.zeros((len(self.taps), 6))
        owner = np.array(owner, "int32")
        sums = ops.segment_sum(
            ops.take(norms, ordered, axis=0), owner, num_segments=len(self.taps)
        )
        # Measured: every kernel of the layer got a gradient that was
        # applied (the minimum of the flags, as minus the maximum of minus).
        flag = -ops.segment_max(
            -ops.take(ops.stack(applied), ordered, axis=0), owner,
            num_segments=len(self.taps),
        )
        flag = ops.where(np.array(complete), flag, 0.0)
        return ops.concatenate([flag[:, None], sums], axis=1)

    def _batch_norm_block(self, trace, unit_needs, value_of):
        """`[taps, 7]` BatchNorm fields (NaN for other layers), averaged over
        each layer's channels in one segment reduction for all of them."""
        width = 7
        entries = [(i, calls) for i, name, calls in unit_needs if name == "bn"]
        block = _nans((len(self.taps), width))
        if not entries:
            return block
        channels = {f: [] for f in st.MOMENT_FIELDS}
        columns = {k: [] for k in ("moving_before", "var_before", "epsilon", "moving_mean",
                                   "moving_var", "gamma", "beta")}
        segments = []
        for n, (i, calls) in enumerate(entries):
            tap = self.taps[i]
            layer = tap.layer
            pooled = _pool_calls(calls)
            for f in st.MOMENT_FIELDS:
                channels[f].append(pooled[f])
            size = int(pooled["count"].shape[0])
            segments += [n] * size
            before_mean, before_var = trace.calls[tap][0].moving_before
            columns["moving_before"].append(ops.reshape(st.as_float32(before_mean), [-1]))
            columns["var_before"].append(ops.reshape(st.as_float32(before_var), [-1]))
            columns["epsilon"].append(ops.full((size,), float(layer.epsilon), "float32"))
            for name, variable in (("moving_mean", layer.moving_mean),
                                   ("moving_var", layer.moving_variance),
                                   ("gamma", getattr(layer, "gamma", None)),
                                   ("beta", getattr(layer, "beta", None))):
                columns[name].append(
                    _nans((size,)) if variable is None
                    else ops.reshape(st.as_float32(value_of(variable)), [-1])
                )
        # Every BatchNorm layer's channels at once: a few ops, not a few per
        # layer.
        flat = {k: ops.concatenate(v, 0) for k, v in columns.items()}
        statistics = st.channel_statistics(
            {f: ops.concatenate(v, 0) for f, v in channels.items()},
            flat["moving_before"], flat["var_before"], flat["epsilon"],
        )
        values = [*statistics] + [flat[k] for k in ("moving_mean", "moving_var", "gamma", "beta")]
        sizes = ops.convert_to_tensor(np.bincount(segments).astype("float32"))
        segments = np.array(segments, "int32")
        averages = ops.stack(
            [
                ops.segment_sum(v, segments, num_segments=len(entries)) / sizes
                for v in values
            ],
            1,
        )
        # In FIELDS order: batch mean, batch var, skew, moving mean and
        # variance, gamma, beta.
        return ops.scatter_update(block, [[i] for i, _ in entries], averages)

    def _saturated_block(self, saturated):
        block = _nans((len(self.taps), len(self.thresholds)))
        if not saturated:
            return block
        return ops.scatter_update(
            block, [[i, j] for i, j, _ in saturated],
            ops.stack([_add(c) for _, _, c in saturated]),
        )

    def _activity(self, unit_needs):
        """Per layer with a floor (in layout order): 1 for each unit that
        left the floor on this step, 0 for each dead one."""
        peaks = {i: calls for i, name, calls in unit_needs if name == "out"}
        activity = []
        for i, (tap, size) in enumerate(zip(self.taps, self._layout)):
            if not size:
                continue
            calls = peaks.get(i)
            if calls is None or int(calls[0]["peak"].shape[0]) != size:
                activity.append(ops.zeros((size,)))
                continue
            activity.append(st.as_float32(_pool_calls(calls)["peak"] > tap.floor))
        return activity


class _Reduced:
    """Every requested matrix reduced, with as few ops as may be: matrices
    with one number of units (and the same need of peaks) share their ops'
    vectors and one check for non-finite values.

    Attributes:
        table: `[matrices, 4]`: count, mean, m2 and non-finite count of each
            matrix as a whole (pooled over its units).
        row: Matrix key -> its row of `table`.
    """

    def __init__(self, matrices, peaks, xla):
        by_units = {}
        for key, matrix in matrices.items():
            group = (matrix.shape[-1], key in peaks)
            by_units.setdefault(group, []).append(key)
        self._units = {}
        self.row = {}
        tables = []
        groups = list(by_units.values())
        reduced = st.grouped_unit_partials(
            [([matrices[k] for k in keys], keys[0] in peaks) for keys in groups], xla
        )
        for keys, stacked in zip(groups, reduced):
            whole = st.pool(*(stacked[f] for f in st.MOMENT_FIELDS), axis=1)
            tables.append(ops.stack([*whole, ops.sum(stacked["nonfinite"], 1)], 1))
            for g, key in enumerate(keys):
                self.row[key] = len(self.row)
                self._units[key] = (stacked, g)
        self.table = ops.concatenate(tables, 0) if tables else ops.zeros((0, 4))

    def units(self, key, fields):
        """Per-unit vectors of one matrix."""
        stacked, g = self._units[key]
        return {f: stacked[f][g] for f in fields}


def _nans(shape):
    return ops.full(shape, _NAN, "float32")


def _add(values):
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def _pool_calls(calls):
    """One layer's per-unit partials, its several calls (shared) pooled."""
    return calls[0] if len(calls) == 1 else st.pool_partials(st.stack_partials(calls))


def _axes(layer):
    return list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]


def size(taps, thresholds, layout):
    """The length of the packed vector."""
    return len(taps) * (len(st.FIELDS) + len(thresholds)) + sum(layout)


def unpack(packed, taps, thresholds, layout):
    """`(fields [taps, width], {tap: activity vector})` of a packed vector."""
    width = len(st.FIELDS) + len(thresholds)
    count = len(taps) * width
    fields = packed[:count].reshape(len(taps), width)
    activity, offset = {}, count
    for tap, units in zip(taps, layout):
        if units:
            activity[tap] = packed[offset:offset + units]
            offset += units
    return fields, activity


def distributions_size(taps):
    """The length of the distributions vector."""
    return len(taps) * (2 * metadata.HISTOGRAM_WIDTH + 2 * metadata.UNITS_SHOWN)


def unpack_distributions(packed, taps):
    """`{name: [taps, width] array}` of a distributions vector, in
    `metadata.DISTRIBUTION_NAMES` order."""
    width, shown = metadata.HISTOGRAM_WIDTH, metadata.UNITS_SHOWN
    per_tap = packed.reshape(len(taps), 2 * width + 2 * shown)
    bounds = [0, width, 2 * width, 2 * width + shown, 2 * width + 2 * shown]
    return {
        name: per_tap[:, bounds[n]:bounds[n + 1]]
        for n, name in enumerate(metadata.DISTRIBUTION_NAMES)
    }
