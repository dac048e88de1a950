"""How statistics are captured: taps in the one train function.

While GradWatch is attached, the model runs a single train function: Keras'
own train step, wrapped. As it is traced,

- a `LayerTap` on each watched layer's `call` keeps the layer's input and
  output, BatchNormalization's moving statistics before the call, and wraps
  the output in an identity whose gradient hands over dLoss/d(output);
- an `OptimizerTap` on `optimizer.apply` keeps each watched kernel's gradient
  (and the loss scale, under mixed precision);
- after Keras' step, one `cond` on a recording flag measures everything kept
  (`gradwatch.statistics`) and stores the few numbers per layer in one
  variable, which the host reads with one call. A recorded step also reads
  the watched kernels as it starts, for the update ratio (the optimizer's
  update then copies them: no copy is kept between steps).

So there is one trace and one compilation, as without GradWatch. Unrecorded
steps run the same compiled function with the flag off: they pay for the
flag test only. GradWatch instances that watch the same layers of a model
share the traced function (`Capture`), so a new callback on an already
trained model traces nothing.

Under a `tf.distribute` strategy every replica measures its share of the
batch; the per-unit partial sums are gathered across replicas inside the step
and pooled exactly, so every replica stores the global numbers.
"""

import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from gradwatch_tensorboard import metadata

from . import keras_internals as internals
from . import statistics as st

# The order of rows in a member's `read()`: the metrics' one list.
SNAPSHOT_METRICS = metadata.METRIC_NAMES

_NAN = float("nan")


def _is_float_tensor(x):
    return (
        isinstance(x, (tf.Tensor, tf.Variable))
        and x.dtype.is_floating
        and x.shape.rank is not None
    )


class Replicas:
    """Where the capture's state lives, and how replicas pool their sums.

    Args:
        strategy: The model's `tf.distribute.Strategy` (the default one when
            training is not distributed).
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.count = strategy.num_replicas_in_sync
        self.distributed = self.count > 1

    def variable(self, shape, dtype=tf.float32):
        """A non-trainable state variable, zeros to start with.

        Distributed, each replica keeps its own copy (written in the step,
        with the same global numbers on every replica) and a read outside the
        step takes the first replica's.
        """
        with tf.init_scope():
            initial_value = tf.zeros(shape, dtype)
            if not self.distributed:
                return tf.Variable(initial_value, trainable=False)
            with self.strategy.scope():
                return tf.Variable(
                    initial_value,
                    trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )

    @property
    def is_chief(self):
        """Whether this process writes: only the chief of a multi-worker job
        (the `chief` task, else worker 0) does, as Keras' own callbacks."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        task_type = getattr(resolver, "task_type", None)
        if task_type is None:
            return True
        cluster = resolver.cluster_spec().as_dict()
        if "chief" in cluster:
            return task_type == "chief"
        return task_type == "worker" and int(resolver.task_id or 0) == 0

    def sum(self, values):
        """Sums a nest of tensors over replicas (inside the step)."""
        context = tf.distribute.get_replica_context()
        if not self.distributed or context is None:
            return values
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    def gather(self, vector):
        """`[k]` on each replica -> `[replicas, k]` on every replica.

        Each replica fills its own row and the rows are summed: an all-gather
        made of the one collective every strategy has.
        """
        if not self.distributed:
            return vector[None]
        context = tf.distribute.get_replica_context()
        slot = tf.one_hot(context.replica_id_in_sync_group, self.count)
        return self.sum(slot[:, None] * vector[None, :])


class _MethodHook:
    """The one wrapper around `target.<method>`, shared by every tap on it.

    Two captures on one layer (a layer shared by two watched models) each add
    their tap to the same wrapper rather than wrapping a wrapper, so either
    can leave first and the last to leave restores the method.

    Args:
        target: The layer or optimizer.
        method: The method's name.
        dispatch: `dispatch(original, active_taps, args, kwargs)` runs the
            method, captured by the taps whose capture is tracing.
    """

    _ABSENT = object()

    def __init__(self, target, method, dispatch):
        self.target = target
        self.method = method
        # An instance attribute of that name (rare) is restored as it was.
        self.saved = vars(target).get(method, self._ABSENT)
        original = getattr(target, method)
        self.taps = []

        def method_with_taps(*args, **kwargs):
            active = [t for t in self.taps if t.active]
            if not active:
                return original(*args, **kwargs)
            return dispatch(original, active, args, kwargs)

        method_with_taps._gradwatch_hook = self
        internals.replace_method(target, method, method_with_taps)

    @classmethod
    def add(cls, target, method, tap, dispatch):
        hook = getattr(vars(target).get(method), "_gradwatch_hook", None)
        if hook is None:
            hook = cls(target, method, dispatch)
        if tap not in hook.taps:
            hook.taps.append(tap)

    @classmethod
    def remove(cls, target, method, tap):
        hook = getattr(vars(target).get(method), "_gradwatch_hook", None)
        if hook is None or tap not in hook.taps:
            return
        hook.taps.remove(tap)
        if not hook.taps:
            saved = None if hook.saved is cls._ABSENT else hook.saved
            internals.restore_method(target, method, saved)


def _call_with_taps(original, taps, args, kwargs):
    """A layer's `call`, seen by each active tap in turn."""
    # BatchNormalization's moving statistics as the step found them, before
    # the call updates them: the skew compares the batch with these.
    before = {t: t.moving_statistics() for t in taps if t.is_batch_norm}
    outputs = original(*args, **kwargs)
    for tap in taps:
        outputs = tap.after_call(args, kwargs, outputs, before.get(tap))
    return outputs


class _Call:
    """What one call of a watched layer handed over while being traced."""

    def __init__(self, x, y, moving_before):
        self.x = x
        self.y = y
        self.moving_before = moving_before
        self.gradients = []  # dLoss/dy, filled in by the backward pass


class _Trace:
    """What one trace of the train step kept, for the measuring `cond`."""

    def __init__(self):
        self.graph = tf.compat.v1.get_default_graph()
        self.calls = {}  # tap -> [_Call]
        self.aliases = {}  # ref of a tap's output -> the layer's own output
        self.elsewhere = set()  # taps called in another graph
        # id(variable) -> _KernelGradient (this replica's)
        self.kernel_gradients = {}
        self.loss_scale = None  # The first loss-scaling optimizer's scale.


class _KernelGradient:
    """A watched kernel's gradient as its optimizer received it: scaled by
    `scale` (a loss-scaling optimizer's, else None), and applied only if
    `finite` (None: always)."""

    def __init__(self, gradient, scale, finite):
        self.gradient = gradient
        self.scale = scale
        self.finite = finite


class LayerTap:
    """Hands one layer's tensors to its capture while the step is traced.

    Args:
        capture: The `Capture`.
        layer: The `keras.layers.Layer` to watch.
        nonlinearity: Its `gradwatch.activations.Nonlinearity`, or None.
    """

    def __init__(self, capture, layer, nonlinearity):
        self.capture = capture
        self.layer = layer
        self.nonlinearity = nonlinearity
        self.is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)

    @property
    def active(self):
        return self.capture.tracing is not None

    @property
    def kernels(self):
        """Trainable weights with 2+ dimensions."""
        return [w for w in self.layer.trainable_weights if len(w.shape) >= 2]

    @property
    def floor(self):
        return None if self.nonlinearity is None else self.nonlinearity.floor

    @property
    def saturated(self):
        return None if self.nonlinearity is None else self.nonlinearity.saturated

    @property
    def units(self):
        """The size of the layer's output's last axis, if Keras knows it."""
        try:
            units = self.layer.output.shape[-1]
        except (AttributeError, ValueError, IndexError, TypeError):
            return None
        return int(units) if units is not None else None

    def install(self):
        _MethodHook.add(self.layer, "call", self, _call_with_taps)

    def uninstall(self):
        _MethodHook.remove(self.layer, "call", self)

    def moving_statistics(self):
        layer = self.layer
        if not layer.built:
            return None
        return (
            tf.identity(layer.moving_mean.value),
            tf.identity(layer.moving_variance.value),
        )

    def after_call(self, args, kwargs, outputs, moving_before):
        trace = self.capture.tracing
        flat = tf.nest.flatten(outputs)
        y = flat[0] if flat else None
        if not _is_float_tensor(y):
            self.capture.unwatchable(self, "its first output is not a float tensor")
            return outputs
        if tf.compat.v1.get_default_graph() is not trace.graph:
            # A loop or condition of the model, or Keras inferring shapes in
            # a scratch graph: not a tensor of the step itself.
            trace.elsewhere.add(self)
            return outputs
        inputs = tf.nest.flatten((args, kwargs))
        x = inputs[0] if inputs and _is_float_tensor(inputs[0]) else None
        if self.is_batch_norm and x is not None and moving_before is None:
            moving_before = self.moving_statistics()  # Built by this call.
        call = _Call(x, y, moving_before)
        trace.calls.setdefault(self, []).append(call)
        self.capture.seen(self)

        @tf.custom_gradient
        def identity_handing_over_gradient(t):
            def gradient(dy):
                call.gradients.append(dy)
                return dy

            return tf.identity(t), gradient

        flat[0] = identity_handing_over_gradient(y)
        trace.aliases[flat[0].ref()] = y
        return tf.nest.pack_sequence_as(outputs, flat)


class OptimizerTap:
    """Hands the watched kernels' gradients to the capture.

    Hooks one optimizer's `apply`. Every optimizer the model holds is tapped
    (a GAN's two), so a kernel is measured whichever applies its gradient.
    Under a `LossScaleOptimizer` the outer one is tapped: it gets the scaled
    gradients, and the capture divides the scale out.
    """

    def __init__(self, capture, optimizer):
        self.capture = capture
        self.optimizer = optimizer

    @property
    def active(self):
        return self.capture.tracing is not None

    def install(self):
        _MethodHook.add(self.optimizer, "apply", self, _apply_with_taps)

    def uninstall(self):
        _MethodHook.remove(self.optimizer, "apply", self)

    def before_apply(self, grads, trainable_variables):
        trace = self.capture.tracing
        if tf.compat.v1.get_default_graph() is not trace.graph:
            return  # Applied inside a loop or condition: not usable after it.
        scale = internals.loss_scale(self.optimizer)
        finite = None
        if scale is not None:
            # The scale the gradients carry, before `apply` changes it; the
            # loss scaler skips the update when any gradient is not finite.
            scale = tf.identity(st.as_float32(scale))
            finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
            )
            if trace.loss_scale is None:
                trace.loss_scale = scale
        watched = self.capture.kernel_ids
        for grad, variable in zip(grads, trainable_variables):
            if grad is not None and id(variable) in watched:
                trace.kernel_gradients[id(variable)] = _KernelGradient(grad, scale, finite)


def _apply_with_taps(original, taps, args, kwargs):
    """`optimizer.apply(grads, trainable_variables)`, seen by each tap."""
    grads, trainable_variables = (list(args) + [None, None])[:2]
    grads = kwargs.get("grads", grads)
    trainable_variables = kwargs.get("trainable_variables", trainable_variables)
    if trainable_variables is not None:  # Else nothing tells kernels apart.
        for tap in taps:
            tap.before_apply(list(grads), list(trainable_variables))
    return original(*args, **kwargs)


class Capture:
    """One model's train step with taps on a set of layers, traced once.

    Shared by every GradWatch on the model that together watch these layers
    with these saturation thresholds (see `_ModelCaptures`).

    Args:
        model: A compiled `keras.Model`.
        keras_function: Keras' own train function, restored when no
            GradWatch is attached.
        watched: `(layer, nonlinearity)` pairs, one per layer.
        thresholds: The saturation thresholds to count at, in order.
    """

    # Traces of every capture's train step, for tests that count them.
    traces = 0

    def __init__(self, model, keras_function, watched, thresholds):
        self.model = model
        self.keras_function = keras_function
        self.thresholds = tuple(thresholds)
        self.replicas = Replicas(model.distribute_strategy)
        self.taps = [LayerTap(self, layer, nl) for layer, nl in watched]
        self.optimizer_taps = [OptimizerTap(self, o) for o in internals.optimizers_of(model)]
        self.tracing = None  # The `_Trace` under way.
        self.order = []  # Taps in forward order, as first traced.
        self.unwatchable_reasons = {}  # tap -> reason
        self.on_unwatchable = None
        with tf.init_scope():  # Set by the host between steps.
            self._flag = tf.Variable(False, trainable=False) if self.gated else None
        self._flag_value = False
        self._output = None
        self._layout = None
        self._last_read = None
        self._make_state()
        self.function = self._make_function()

    # -- state ---------------------------------------------------------------

    @property
    def kernel_ids(self):
        return {id(k) for tap in self.taps for k in tap.kernels}

    def _known_sizes(self):
        """Each tap's activity size (0 without a floor), or None if a unit
        count is not known before tracing (a subclassed model's layers)."""
        sizes = []
        for tap in self.taps:
            units = tap.units if tap.floor is not None else 0
            if units is None:
                return None
            sizes.append(units)
        return sizes

    def _make_state(self, sizes=None):
        """Makes the output, now if its size is known: a variable made while
        tracing makes tf.function trace again."""
        sizes = sizes if sizes is not None else self._known_sizes()
        if sizes is not None and self._output is None:
            self._layout = sizes
            width = len(st.FIELDS) + len(self.thresholds)
            size = len(self.taps) * width + sum(sizes)
            self._output = self.replicas.variable([size])

    @property
    def gated(self):
        """Whether one function serves every step, measuring behind the flag.

        Distributed, a collective inside a `cond` is not allowed (MirroredStrategy
        syncs through `merge_call`): the capture's function then measures on
        every call, and runs only on recorded steps, Keras' own on the others.
        """
        return not self.replicas.distributed

    @property
    def xla(self):
        """Whether the train step is XLA-compiled (Keras resolves "auto")."""
        return bool(getattr(self.model, "jit_compile", False)) and not self.model.run_eagerly

    @property
    def current_function(self):
        """The train function the model runs next."""
        if self.gated or self._flag_value:
            return self.function
        return self.keras_function

    def set_recording(self, on):
        """Whether the next call of the train function records."""
        if on == self._flag_value:
            return
        self._flag_value = on
        if self.gated:
            self._flag.assign(on)

    def _when_recording(self, make_ops):
        if not self.gated:
            make_ops()
            return
        tf.cond(
            self._flag,
            lambda: _group(make_ops()),
            lambda: tf.constant(False),
        )

    def install(self):
        for tap in self.taps + self.optimizer_taps:
            tap.install()

    def uninstall(self):
        for tap in self.taps + self.optimizer_taps:
            tap.uninstall()
        self.set_recording(False)

    def seen(self, tap):
        if tap not in self.order:
            self.order.append(tap)

    def unwatchable(self, tap, reason):
        if tap not in self.unwatchable_reasons:
            self.unwatchable_reasons[tap] = reason
            if self.on_unwatchable is not None:
                self.on_unwatchable(tap, reason)

    # -- tracing ---------------------------------------------------------------

    def _make_function(self):
        """Keras' train function, made again around our train step."""
        model = self.model
        keras_train_step = model.train_step

        def train_step(data):
            type(self).traces += 1
            self._make_state()
            kernels = [k for tap in self.taps for k in tap.kernels]
            before = self._values_before(kernels)
            self.tracing = trace = _Trace()
            try:
                logs = keras_train_step(data)
            finally:
                self.tracing = None
            for tap in trace.elsewhere - set(trace.calls):
                self.unwatchable(tap, "it is only called inside a loop or condition")
            # Layers built by this very trace (a subclassed model's) are known
            # only now; tf.function traces again to lift the new variables.
            self._make_state(None if self._output is not None else self._sizes_seen(trace))
            self._when_recording(
                lambda: [self._output.assign(self._measure(trace, kernels, before))]
            )
            return logs

        return internals.make_train_function(model, train_step)

    def _values_before(self, kernels):
        """The kernels as the step starts, for the update ratio: reads, not
        copies. While a read is alive, TensorFlow's update of the variable
        copies it first (copy-on-write), so a recorded step pays one copy,
        kept only until the step ends, and nothing is kept between steps.
        On unrecorded steps the read is not made (an empty stand-in), so
        the update stays in place. XLA updates into a new buffer anyway."""
        if not kernels:
            return []

        def reads():
            return [tf.identity(k.value) for k in kernels]

        if not self.gated or self.xla:
            return reads()
        empty = [tf.zeros([0], k.dtype) for k in kernels]
        # Of unknown shape outside the recording branch: reshaped in it.
        return tf.cond(self._flag, reads, lambda: empty)

    def _sizes_seen(self, trace):
        # A subclassed model's layers have no symbolic output: the traced
        # step tells their unit counts (tf.function then traces once more,
        # to lift the new variable out).
        sizes = []
        for tap in self.taps:
            calls = trace.calls.get(tap)
            if tap.floor is None or not calls:
                sizes.append(0)
            else:
                sizes.append(int(st.as_units(calls[0].y).shape[-1]))
        return sizes

    # -- measuring (inside the recording `cond`) ----------------------------

    def _measure(self, trace, kernels, before):
        """Every watched layer's fields and activity, as one float32 vector.

        Vectorised over layers: a handful of ops per shape of tensor, not per
        layer, so that a deep model's recorded step is not a long string of
        tiny ops (whose dispatch would cost more than their arithmetic).
        """
        matrices = {}  # (tensor ref, unit axes) -> [rows, units] matrix

        def request(tensor, unit_axes=(-1,)):
            # A layer's input that is another watched layer's output is the
            # same tensor: reduced once.
            tensor = trace.aliases.get(tensor.ref(), tensor)
            rank = max(tensor.shape.rank, 1)
            key = (tensor.ref(), tuple(sorted(a % rank for a in unit_axes)))
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
                        tf.reduce_sum(st.saturated_count(matrices[k], tap.saturated, threshold))
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
                    extra.append(st.pool_rows(tf.gather(table, indices)))
        nan_row = len(reduced.row) + len(extra)
        table = tf.concat([table] + [r[None] for r in extra] + [tf.fill([1, 4], _NAN)], 0)

        def column_block(name):
            return tf.gather(table, [rows.get((i, name), nan_row) for i in range(len(self.taps))])

        out, inp, grad = column_block("out"), column_block("in"), column_block("grad")
        scale = 1.0 if trace.loss_scale is None else trace.loss_scale
        grad = tf.stack(
            [grad[:, 0], grad[:, 1] / scale, grad[:, 2] / (scale * scale), grad[:, 3]], 1
        )
        kernel_block = self._kernel_block(trace, kernels, before)
        bn_block = self._batch_norm_block(trace, unit_needs)
        sat_block = self._saturated_block(saturated)
        fields = tf.concat(
            [out, inp[:, :3], grad, kernel_block, bn_block, sat_block], axis=1
        )
        activity = self._activity(unit_needs)
        return tf.concat([tf.reshape(fields, [-1])] + activity, axis=0)

    def _pool_replicas(self, table, unit_needs, saturated):
        """Gathers every replica's numbers and pools them: moments exactly
        (Chan), peaks by their maximum, counts by their sum."""
        if not self.replicas.distributed:
            return table, unit_needs, saturated
        pieces = [tf.reshape(table, [-1])]
        for _, _, calls in unit_needs:
            pieces += [v for p in calls for v in p.values()]
        pieces += [c[None] for _, _, counts in saturated for c in counts]
        gathered = self.replicas.gather(tf.concat(pieces, 0))  # [replicas, k]
        size = int(table.shape[0]) * 4
        offset = size
        per_replica = tf.reshape(gathered[:, :size], [self.replicas.count, -1, 4])
        table = st.pool_rows(tf.transpose(per_replica, [1, 0, 2]))
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
                (i, j, [tf.reduce_sum(gathered[:, offset + n]) for n in range(len(counts))])
            )
            offset += len(counts)
        return table, pooled_needs, pooled_saturated

    def _kernel_block(self, trace, kernels, values_before):
        """`[taps, 4]`: whether measured, then the squared norms of the
        kernels' gradients, updates and values before the update."""
        measured = [k for k in kernels if id(k) in trace.kernel_gradients]
        received = [trace.kernel_gradients[id(k)] for k in measured]
        gradients = self.replicas.sum([r.gradient for r in received])
        # Each kernel's gradient carries its own optimizer's loss scale.
        scales = tf.stack([1.0 if r.scale is None else r.scale for r in received]) if measured else None
        before_of = {id(k): b for k, b in zip(kernels, values_before)}
        before = [tf.reshape(before_of[id(k)], k.shape) for k in measured]
        norms = tf.stack(
            [
                tf.stack(st.squared_norms(gradients, self.xla)) / (scales * scales),
                tf.stack(
                    st.squared_norms([k.value - b for k, b in zip(measured, before)], self.xla)
                ),
                tf.stack(st.squared_norms(before, self.xla)),
            ],
            axis=1,
        ) if measured else tf.zeros([0, 3])
        # A step the loss scaler skipped updated nothing: unmeasured.
        applied = [
            tf.constant(1.0) if r.finite is None else st.as_float32(r.finite)
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
        sums = tf.math.unsorted_segment_sum(
            tf.gather(norms, ordered), owner, num_segments=len(self.taps)
        ) if ordered else tf.zeros([len(self.taps), 3])
        # Measured: every kernel of the layer got a gradient that was applied.
        flag = tf.math.unsorted_segment_min(
            tf.gather(tf.stack(applied), ordered), owner, num_segments=len(self.taps)
        ) if ordered else tf.zeros([len(self.taps)])
        flag = tf.where(tf.constant(complete), flag, 0.0)
        return tf.concat([flag[:, None], sums], axis=1)

    def _batch_norm_block(self, trace, unit_needs):
        """`[taps, 7]` BatchNorm fields (NaN for other layers), averaged over
        each layer's channels in one segment reduction for all of them."""
        width = 7
        entries = [(i, calls) for i, name, calls in unit_needs if name == "bn"]
        block = tf.fill([len(self.taps), width], _NAN)
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
            columns["moving_before"].append(tf.reshape(st.as_float32(before_mean), [-1]))
            columns["var_before"].append(tf.reshape(st.as_float32(before_var), [-1]))
            columns["epsilon"].append(tf.fill([size], float(layer.epsilon)))
            for name, variable in (("moving_mean", layer.moving_mean),
                                   ("moving_var", layer.moving_variance),
                                   ("gamma", getattr(layer, "gamma", None)),
                                   ("beta", getattr(layer, "beta", None))):
                columns[name].append(
                    tf.fill([size], _NAN) if variable is None
                    else tf.reshape(st.as_float32(variable.value), [-1])
                )
        # Every BatchNorm layer's channels at once: a few ops, not a few per
        # layer.
        flat = {k: tf.concat(v, 0) for k, v in columns.items()}
        statistics = st.channel_statistics(
            {f: tf.concat(v, 0) for f, v in channels.items()},
            flat["moving_before"], flat["var_before"], flat["epsilon"],
        )
        values = [*statistics] + [flat[k] for k in ("moving_mean", "moving_var", "gamma", "beta")]
        sizes = tf.constant(np.bincount(segments), tf.float32)
        averages = tf.stack(
            [
                tf.math.unsorted_segment_sum(v, segments, len(entries)) / sizes
                for v in values
            ],
            1,
        )
        # In FIELDS order: batch mean, batch var, skew, moving mean and
        # variance, gamma, beta.
        return tf.tensor_scatter_nd_update(block, [[i] for i, _ in entries], averages)

    def _saturated_block(self, saturated):
        block = tf.fill([len(self.taps), len(self.thresholds)], _NAN)
        if not saturated:
            return block
        return tf.tensor_scatter_nd_update(
            block, [[i, j] for i, j, _ in saturated], tf.stack([tf.add_n(c) for _, _, c in saturated])
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
                activity.append(tf.zeros([size]))
                continue
            activity.append(st.as_float32(_pool_calls(calls)["peak"] > tap.floor))
        return activity

    # -- reading (on the host, after a recorded step) ------------------------

    def read(self, step):
        """What the last recorded step stored: `(fields [taps, width],
        {tap: activity vector})`. Read once per step, however many
        GradWatch ask."""
        if self._last_read is None or self._last_read[0] != step:
            with self.replicas.strategy.scope():
                packed = self._output.numpy()
            width = len(st.FIELDS) + len(self.thresholds)
            count = len(self.taps) * width
            fields = packed[:count].reshape(len(self.taps), width)
            activity, offset = {}, count
            for tap, size in zip(self.taps, self._layout):
                if size:
                    activity[tap] = packed[offset:offset + size]
                    offset += size
            self._last_read = (step, fields, activity)
        return self._last_read[1:]


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
            tables.append(tf.stack([*whole, tf.reduce_sum(stacked["nonfinite"], 1)], 1))
            for g, key in enumerate(keys):
                self.row[key] = len(self.row)
                self._units[key] = (stacked, g)
        self.table = tf.concat(tables, 0) if tables else tf.zeros([0, 4])

    def units(self, key, fields):
        """Per-unit vectors of one matrix."""
        stacked, g = self._units[key]
        return {f: stacked[f][g] for f in fields}


def _pool_calls(calls):
    """One layer's per-unit partials, its several calls (shared) pooled."""
    return calls[0] if len(calls) == 1 else st.pool_partials(st.stack_partials(calls))


def _axes(layer):
    return list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]


def _group(ops):
    """A value that depends on `ops`, so a `cond` branch keeps them."""
    with tf.control_dependencies(ops):
        return tf.constant(True)


class _ModelCaptures:
    """Which `Capture` a model runs, for every GradWatch attached to it.

    The model runs one train function: the capture of the union of the
    attached GradWatch's layers and thresholds. Captures are kept (a few per
    model) so that a GradWatch made again with the same layers, or the next
    `fit` with the same callback, traces nothing new. A recompiled model
    has a new Keras train function: its captures are made afresh.

    Args:
        model: A compiled `keras.Model`.
    """

    KEPT = 4
    _of_model = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model):
        if model not in cls._of_model:
            cls._of_model[model] = cls(model)
        return cls._of_model[model]

    @classmethod
    def members_of(cls, model):
        captures = cls._of_model.get(model)
        return list(captures.members) if captures else []

    def __init__(self, model):
        self.model = model
        self.keras_function = None
        self.members = []
        self.captures = {}
        self.current = None
        self._plans = {}
        self.runner = self._run

    def _keras_train_function(self):
        function = internals.train_function(self.model)
        if function is self.runner:
            return self.keras_function  # Ours, left by an interrupted fit.
        return function

    def join(self, member):
        if not self.members:
            self.keras_function = self._keras_train_function()
            internals.build_optimizer(self.model)
        # A fit is starting: a recording planned by one that was interrupted
        # before its step ran is not to be written.
        for plan in self._plans.values():
            plan[1] = False
        self.members.append(member)
        self._switch()

    def leave(self, member):
        if member in self.members:
            self.members.remove(member)
        self._plans.pop(member, None)
        if self.members:
            self._switch()
            return
        if self.current is not None:
            self.current.uninstall()
            self.current = None
        internals.set_train_function(self.model, self.keras_function)

    def _switch(self):
        layers, seen = [], set()
        for member in self.members:
            for layer, nonlinearity in member.selected:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    layers.append((layer, nonlinearity))
        thresholds = tuple(sorted({m.saturation_threshold for m in self.members}))
        key = (tuple(id(layer) for layer, _ in layers), thresholds)
        capture = self.captures.get(key)
        if capture is None or capture.keras_function is not self.keras_function:
            self.captures = {
                k: c for k, c in self.captures.items()
                if c.keras_function is self.keras_function
            }
            while len(self.captures) >= self.KEPT:
                self.captures.pop(next(iter(self.captures)))
            capture = Capture(self.model, self.keras_function, layers, thresholds)
            self.captures[key] = capture
        if self.current is not capture:
            if self.current is not None:
                self.current.uninstall()
            capture.install()
            self.current = capture
        capture.on_unwatchable = self._unwatchable
        internals.set_train_function(self.model, self.runner)

    def _unwatchable(self, tap, reason):
        for member in self.members:
            member.mark_unwatchable(tap.layer, reason)

    def plan(self, member, step, record):
        """`member` records step `step` or not; the flag is on if any does."""
        self._plans[member] = [step, record]
        self.current.set_recording(
            any(s == step and r for s, r in self._plans.values())
        )

    def _run(self, iterator):
        """The model's train function while GradWatch is attached: the
        capture's, then each GradWatch that recorded this call writes.

        Writing here rather than in `on_train_batch_end` keeps Keras from
        converting every step's logs to Python numbers for a batch-end
        callback (about 1 ms a step on a small model here), and a record is
        still written before any other callback can interrupt `fit`.
        """
        outputs = self.current.current_function(iterator)
        recorders = [m for m, plan in self._plans.items() if plan[1]]
        if recorders:
            # The call measured its last step: the optimizer's count says
            # which (a call may run fewer steps than `steps_per_execution`).
            applied = internals.steps_applied(self.model)
            for member in recorders:
                self._plans[member][1] = False  # Written once.
                member.recorded(applied - 1)
        return outputs


class Instrumentation:
    """One GradWatch's view of its model's capture.

    Args:
        model: A compiled `keras.Model`.
        selected: `(path, layer, nonlinearity)` for every layer to watch.
        saturation_threshold: See `GradWatch`.
        keep: Optional predicate on a layer, checked once the first recorded
            step has built every layer; layers it rejects are dropped.
    """

    def __init__(self, model, selected, saturation_threshold, keep=None):
        self.model = model
        self.optimizer = model.optimizer
        self.replicas = Replicas(model.distribute_strategy)
        self.selection = list(selected)
        self.paths = {id(layer): path for path, layer, _ in selected}
        self.selected = [(layer, nl) for _, layer, nl in selected]
        self.saturation_threshold = saturation_threshold
        self._keep = keep
        self._unwatchable = {}
        self._captures = None
        self._watched = None  # (capture, [tap]) in forward order
        self._windows = {}
        self.attached = False
        self._attached_at = None
        self._last_step = None
        # Called after a call of the train function that this instrumentation
        # records (see `_ModelCaptures._run`).
        self.on_recorded = None

    def recorded(self, last_step):
        """The call just run recorded; its last step was `last_step`."""
        if self.on_recorded is not None:
            self.on_recorded(last_step)

    def mark_unwatchable(self, layer, reason):
        path = self.paths.get(id(layer))
        if path is not None and path not in self._unwatchable:
            self._unwatchable[path] = reason
            warnings.warn(
                f"GradWatch cannot watch layer '{path}': {reason}. "
                "Training goes on without it.",
                stacklevel=2,
            )

    def applied_steps(self):
        """How many steps the model's optimizers have applied (a host sync):
        the number of the next step."""
        return internals.steps_applied(self.model)

    def attach(self):
        """Joins the model's capture; other GradWatch on the model stay."""
        step = self.applied_steps()
        # Every GradWatch of one `fit` attaches before its first step: one
        # that attached at an earlier step belongs to an earlier fit that
        # was interrupted before it could detach.
        self._detach_stale(
            [m for m in _ModelCaptures.members_of(self.model) if m._attached_at != step]
        )
        self._attached_at = step
        self._last_step = step - 1
        self._captures = _ModelCaptures.of(self.model)
        self._captures.join(self)
        self.attached = True

    def step(self, step, record):
        """The step numbered `step` is next; `record` says whether we record it.

        Every GradWatch of a `fit` hears of every step: one that did not
        hear of the step before this one is left over from an interrupted
        fit (it attached at the same step as this one, so `attach` could not
        tell) and is detached.
        """
        previous, self._last_step = self._last_step, step
        self._detach_stale(
            [
                m
                for m in _ModelCaptures.members_of(self.model)
                if m is not self and m._last_step < previous
            ]
        )
        self._captures.plan(self, step, record)

    def _detach_stale(self, stale):
        for instrumentation in stale:
            instrumentation.detach()
        if stale:
            warnings.warn(
                "GradWatch removed the hooks of an earlier GradWatch on this "
                "model whose fit was interrupted (an interrupted fit cannot "
                "detach them itself). Its records up to the interruption "
                "are kept.",
                stacklevel=3,
            )

    def detach(self):
        """Leaves the capture. Once every GradWatch on the model has left,
        the model is as it was before."""
        self.attached = False
        if self._captures is not None:
            self._captures.leave(self)
            self._captures = None

    def _taps(self):
        capture = self._captures.current
        if self._watched is None or self._watched[0] is not capture:
            mine = set(self.paths)
            taps = [
                t for t in capture.order
                if id(t.layer) in mine
                and self.paths[id(t.layer)] not in self._unwatchable
                and (self._keep is None or self._keep(t.layer))
            ]
            self._watched = (capture, taps)
        return self._watched[1]

    @property
    def watched(self):
        """`(path, layer, nonlinearity)` of the layers recorded, in forward
        (depth) order."""
        return [(self.paths[id(t.layer)], t.layer, t.nonlinearity) for t in self._taps()]

    def read(self, step):
        """This GradWatch's metrics at the recorded step `step`: a
        `[metrics, layers]` numpy array in `SNAPSHOT_METRICS` order."""
        capture = self._captures.current
        taps = self._taps()
        fields, activity = capture.read(step)
        index = {tap: i for i, tap in enumerate(capture.taps)}
        rows = fields[[index[t] for t in taps]]
        column = len(st.FIELDS) + capture.thresholds.index(self.saturation_threshold)
        windows = [
            self._windows.setdefault(t, np.zeros(activity[t].shape, bool))
            if t in activity else None
            for t in taps
        ]
        metrics = st.finish(
            rows[:, : len(st.FIELDS)],
            rows[:, column],
            [activity.get(t) for t in taps],
            windows,
        )
        return np.stack([metrics[name] for name in SNAPSHOT_METRICS]).reshape(
            len(SNAPSHOT_METRICS), len(taps)
        )

    def reset_windows(self):
        self._windows = {}
