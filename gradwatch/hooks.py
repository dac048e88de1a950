"""How statistics are captured: hooks into the real train step.

A `LayerProbe` wraps one layer's `call`. While a capture is active (only in the
instrumented copy of the train function, see `Instrumentation`), it reduces
the layer's input and output to a few numbers with `gradwatch.statistics`,
and wraps the output in an identity whose gradient function reduces
dLoss/d(output) the same way. The numbers land in small non-trainable
variables that the probe owns (the model gets none), so nothing but
`O(layers x metrics)` floats ever leaves the device.

An `OptimizerProbe` wraps the optimizer's `apply` to measure each layer's
kernel-gradient norm and update ratio on the same step.

`Instrumentation` installs and removes all of this. Keras builds its train
function once; we keep Keras' own function for the steps we don't record and
trace a second, instrumented copy for the steps we do, so unrecorded steps
run exactly the code they ran without GradWatch.

Under a `tf.distribute` strategy every partial sum is all-reduced across
replicas inside the step, so the statistics describe the global batch, and
every replica stores the same numbers (read from the first).
"""

import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from . import statistics as st

# Fields of a probe's forward accumulator: moments of the output, its
# non-finite and saturated counts, then moments of the input.
_FORWARD_FIELDS = 8
# Backward: moments of dLoss/d(output), then its non-finite count.
_BACKWARD_FIELDS = 4
# Optimizer: whether it was measured, then squared norms of gradient, update
# and weights.
_OPTIMIZER_FIELDS = 4
# BatchNormalization, per channel: moments of the input, then the moving mean
# and variance the step started from.
_BN_ROWS = 5

# The order of rows in a snapshot; see tensorboard_plugin/metadata.py.
SNAPSHOT_METRICS = (
    "activation_mean",
    "activation_var",
    "activation_gain",
    "gradient_var",
    "gradient_norm",
    "update_ratio",
    "saturation_fraction",
    "dead_units",
    "dead_fraction",
    "dead_units_window",
    "bn_batch_mean",
    "bn_batch_var",
    "bn_moving_mean",
    "bn_moving_var",
    "bn_gamma",
    "bn_beta",
    "bn_skew",
    "activation_nonfinite",
    "gradient_nonfinite",
)

_NAN = float("nan")


def _is_float_tensor(x):
    return (
        isinstance(x, (tf.Tensor, tf.Variable))
        and x.dtype.is_floating
        and x.shape.rank is not None
    )


class Replicas:
    """Where the probes' state lives, and how partial sums are pooled.

    Args:
        strategy: The model's `tf.distribute.Strategy` (the default one when
            training is not distributed).
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.distributed = strategy.num_replicas_in_sync > 1

    def zeros(self, shape):
        """A non-trainable float32 state variable of `shape`, all zeros.

        Distributed, each replica keeps its own copy (no synchronisation on
        write) and a read outside the step takes the first replica's: every
        replica holds the same, globally pooled numbers.
        """
        if not self.distributed:
            return tf.Variable(tf.zeros(shape), trainable=False)
        with self.strategy.scope():
            return tf.Variable(
                tf.zeros(shape),
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

    @property
    def all_sum(self):
        """A cross-replica sum for use inside the step, or None."""
        if not self.distributed:
            return None

        def all_sum(value):
            context = tf.distribute.get_replica_context()
            if context is None:  # Not inside the replicated step.
                return value
            return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

        return all_sum

    def sum(self, value):
        return self.all_sum(value) if self.distributed else value


class CaptureSwitch:
    """Whether probes record: True only while the instrumented step runs.

    It is read when the train function is traced (or on every call with
    `run_eagerly=True`), never inside the graph. Each trace of the train step
    (tf.function may trace twice in one call) is a new `generation`: a probe's
    first call in a generation overwrites its accumulator, and only a shared
    layer's later calls pay for a merge.
    """

    def __init__(self):
        self.active = False
        self.generation = 0
        # Moments of tensors already reduced in this generation, so that a
        # layer's input that is the previous layer's output is not reduced
        # twice.
        self.known_moments = {}

    def new_generation(self):
        """Called as each train step is traced (or run eagerly)."""
        self.generation += 1
        self.known_moments = {}


class CaptureContext:
    """What every probe of one model shares.

    Args:
        switch: The `CaptureSwitch`.
        replicas: The `Replicas`.
        saturation_threshold: See `GradWatch`.
        loss_scale: None, or a function returning the loss scale by which
            gradients are multiplied (mixed precision), to divide it out.
        on_unwatchable: Called with `(probe, reason)` when a layer's output
            can't be reduced; the layer is then left alone.
        on_forward: Called with the probe each time it records, so that the
            instrumentation learns the forward (depth) order.
    """

    def __init__(
        self,
        switch,
        replicas,
        saturation_threshold,
        loss_scale,
        on_unwatchable,
        on_forward,
    ):
        self.switch = switch
        self.replicas = replicas
        self.saturation_threshold = saturation_threshold
        self.loss_scale = loss_scale
        self.on_unwatchable = on_unwatchable
        self.on_forward = on_forward


def _output_units(layer):
    """The size of a layer's output's last axis, if Keras knows it yet."""
    try:
        units = layer.output.shape[-1]
    except (AttributeError, ValueError, IndexError, TypeError):
        return None
    return int(units) if units is not None else None


class _MethodHook:
    """The one wrapper around `target.<method>`, shared by every probe on it.

    Two GradWatch on one model (or a layer shared by two watched models) each
    add their probe to the same wrapper rather than wrapping a wrapper, so
    either can leave first and the last to leave restores the method.

    Args:
        target: The layer or optimizer.
        method: The method's name.
        dispatch: `dispatch(original, active_probes, args, kwargs)` runs the
            method, capturing for the probes whose capture is active.
    """

    _ABSENT = object()

    def __init__(self, target, method, dispatch):
        self.target = target
        self.method = method
        # An instance attribute of that name (rare) is restored as it was.
        self.saved = vars(target).get(method, self._ABSENT)
        original = getattr(target, method)
        self.probes = []

        def method_with_probes(*args, **kwargs):
            active = [p for p in self.probes if p.active]
            if not active:
                return original(*args, **kwargs)
            return dispatch(original, active, args, kwargs)

        method_with_probes._gradwatch_hook = self
        self.wrapper = method_with_probes
        # Bypass Layer.__setattr__: this is not state to track or save.
        object.__setattr__(target, method, method_with_probes)

    @classmethod
    def add(cls, target, method, probe, dispatch):
        current = vars(target).get(method)
        hook = getattr(current, "_gradwatch_hook", None)
        if hook is None:
            hook = cls(target, method, dispatch)
        if probe not in hook.probes:
            hook.probes.append(probe)

    @classmethod
    def remove(cls, target, method, probe):
        hook = getattr(vars(target).get(method), "_gradwatch_hook", None)
        if hook is None or probe not in hook.probes:
            return
        hook.probes.remove(probe)
        if not hook.probes:
            if hook.saved is cls._ABSENT:
                object.__delattr__(target, method)
            else:
                object.__setattr__(target, method, hook.saved)


def _call_with_probes(original, probes, args, kwargs):
    """A layer's `call`, captured by each active probe in turn."""
    # BatchNormalization's moving statistics as the step found them, before
    # the call updates them: the skew compares the batch with these.
    before = {p: p._moving_statistics() for p in probes if p.is_batch_norm}
    outputs = original(*args, **kwargs)
    for probe in probes:
        outputs = probe._capture(args, kwargs, outputs, before.get(probe))
    return outputs


class LayerProbe:
    """Captures one layer's statistics from inside the train step.

    Args:
        layer: The `keras.layers.Layer` to watch.
        path: Its name, with the names of enclosing models (`outer/inner`).
        nonlinearity: Its `gradwatch.activations.Nonlinearity`, or None.
        context: The `CaptureContext` of the model.
    """

    def __init__(self, layer, path, nonlinearity, context):
        self.layer = layer
        self.path = path
        self.nonlinearity = nonlinearity
        self._context = context
        self._switch = context.switch
        self.is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        zeros = context.replicas.zeros
        self.forward = zeros([_FORWARD_FIELDS])
        self.backward = zeros([_BACKWARD_FIELDS])
        self.optimizer_sums = zeros([_OPTIMIZER_FIELDS])
        # Per-unit and per-channel state: made now if the size is known,
        # else on the first traced step.
        self.unit_activity = self.unit_window = self.batch_norm = None
        if self.tracks_death and _output_units(layer):
            self._make_unit_state(_output_units(layer))
        if self.is_batch_norm and layer.built:
            self._make_batch_norm_state(layer.moving_mean.shape)
        # The generation each accumulator last wrote in.
        self._written = {}

    @property
    def kernels(self):
        """Trainable weights with 2+ dimensions (read late: a subclassed
        model's layers are built by the first traced step)."""
        return [w for w in self.layer.trainable_weights if len(w.shape) >= 2]

    @property
    def tracks_death(self):
        return self.nonlinearity is not None and self.nonlinearity.floor is not None

    @property
    def tracks_saturation(self):
        return (
            self.nonlinearity is not None
            and self.nonlinearity.saturated is not None
        )

    def _make_unit_state(self, units):
        self.unit_activity = self._context.replicas.zeros([units])
        # Updated only by the snapshot, outside the step.
        self.unit_window = tf.Variable(tf.zeros([units]), trainable=False)

    def _make_batch_norm_state(self, channel_shape):
        self.batch_norm = self._context.replicas.zeros(
            [_BN_ROWS, *channel_shape]
        )

    # -- installing ---------------------------------------------------------

    @property
    def active(self):
        return self._switch.active

    def install(self):
        _MethodHook.add(self.layer, "call", self, _call_with_probes)

    def uninstall(self):
        _MethodHook.remove(self.layer, "call", self)

    # -- capturing (runs while the train step is traced) -------------------

    def _moving_statistics(self):
        # Read before the layer's call updates them: the skew compares the
        # batch with the statistics the step started from.
        layer = self.layer
        if not layer.built:
            return None
        return (
            tf.identity(st.as_float32(layer.moving_mean)),
            tf.identity(st.as_float32(layer.moving_variance)),
        )

    def _first_write(self, accumulator):
        """True for the first write to `accumulator` in this generation."""
        generation = self._switch.generation
        first = self._written.get(accumulator) != generation
        self._written[accumulator] = generation
        return first

    def _write(self, accumulator, variable, values, merge):
        """Overwrites `variable` with `values`, or on a later call in the same
        step (a shared layer) combines them with `merge(old, new)`."""
        if not self._first_write(accumulator):
            values = merge(tf.unstack(variable), values)
        return variable.assign(tf.stack(values))

    def _moments_of(self, x):
        known = self._switch.known_moments.get(x.ref())
        if known is None:
            known = st.moments(x, self._context.replicas.all_sum)[0]
        return known

    def _capture(self, args, kwargs, outputs, moving_before=None):
        flat = tf.nest.flatten(outputs)
        y = flat[0] if flat else None
        if not _is_float_tensor(y):
            self._context.on_unwatchable(
                self, "its first output is not a float tensor"
            )
            return outputs
        inputs = tf.nest.flatten((args, kwargs))
        x = inputs[0] if inputs and _is_float_tensor(inputs[0]) else None
        self._context.on_forward(self)
        out = self._record_forward(x, y)
        if self.is_batch_norm and x is not None:
            if moving_before is None:  # Built by this very call.
                moving_before = self._moving_statistics()
            self._record_batch_norm(x, *moving_before)
        flat[0] = self._watch_gradient(y)
        self._switch.known_moments[flat[0].ref()] = out
        return tf.nest.pack_sequence_as(outputs, flat)

    def _record_forward(self, x, y):
        replicas = self._context.replicas
        out, out_nonfinite = st.moments(y, replicas.all_sum)
        if self.tracks_saturation:
            saturated = replicas.sum(
                st.saturated_count(
                    y,
                    self.nonlinearity.saturated,
                    self._context.saturation_threshold,
                )
            )
        else:
            saturated = tf.constant(0.0)
        inp = self._moments_of(x) if x is not None else st.Moments(0.0, 0.0, 0.0)

        def merge(old, new):
            return [
                *st.merge_moments(st.Moments(*old[0:3]), st.Moments(*new[0:3])),
                old[3] + new[3],
                old[4] + new[4],
                *st.merge_moments(st.Moments(*old[5:8]), st.Moments(*new[5:8])),
            ]

        self._write(
            "forward",
            self.forward,
            [*out, out_nonfinite, saturated, *inp],
            merge,
        )
        if self.tracks_death:
            activity = replicas.sum(
                st.unit_activity(y, self.nonlinearity.floor)
            )
            if self.unit_activity is None:
                # Lift out of the traced function: the state outlives it.
                with tf.init_scope():
                    self._make_unit_state(int(activity.shape[0]))
            if self._first_write("units"):
                self.unit_activity.assign(activity)
            else:
                self.unit_activity.assign_add(activity)
        return out

    def _record_batch_norm(self, x, moving_mean, moving_var):
        layer = self.layer
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        batch = st.channel_moments(x, axes, self._context.replicas.all_sum)
        if self.batch_norm is None:
            with tf.init_scope():
                self._make_batch_norm_state(moving_mean.shape)

        def merge(old, new):
            pooled = st.merge_moments(st.Moments(*old[0:3]), st.Moments(*new[0:3]))
            return [*pooled, old[3], old[4]]

        self._write(
            "batch_norm",
            self.batch_norm,
            [*batch, moving_mean, moving_var],
            merge,
        )

    def _watch_gradient(self, y):
        probe = self
        context = self._context

        def merge(old, new):
            return [
                *st.merge_moments(st.Moments(*old[0:3]), st.Moments(*new[0:3])),
                old[3] + new[3],
            ]

        @tf.custom_gradient
        def identity_watching_gradient(t):
            def gradient(dy):
                unscaled = st.as_float32(dy)
                if context.loss_scale is not None:
                    unscaled = unscaled / context.loss_scale()
                grad, grad_nonfinite = st.moments(
                    unscaled, context.replicas.all_sum
                )
                update = probe._write(
                    "backward", probe.backward, [*grad, grad_nonfinite], merge
                )
                # Without this dependency the write can be pruned.
                with tf.control_dependencies([update]):
                    return tf.identity(dy)

            return tf.identity(t), gradient

        return identity_watching_gradient(y)

    def record_optimizer_step(self, gradients, before):
        """Stores kernel-gradient and update norms for this layer.

        Args:
            gradients: The (global) gradients of `self.kernels`, in order.
            before: The kernels' values before the update, in order.
        """
        after = [tf.convert_to_tensor(k) for k in self.kernels]
        delta = [a - b for a, b in zip(after, before)]
        self.optimizer_sums.assign(
            tf.stack(
                [
                    tf.constant(1.0),
                    st.squared_norm(gradients),
                    st.squared_norm(delta),
                    st.squared_norm(before),
                ]
            )
        )

    # -- reading (runs inside the snapshot function) -----------------------

    def snapshot(self):
        """The probe's metrics, in `SNAPSHOT_METRICS` order, then a reset.

        Returns:
            A float32 vector of `len(SNAPSHOT_METRICS)` values.
        """
        nan = tf.constant(_NAN)
        fwd = tf.unstack(self.forward)
        bwd = tf.unstack(self.backward)
        measured, grad_sq, delta_sq, weight_sq = tf.unstack(self.optimizer_sums)
        out, inp, grad = st.Moments(*fwd[0:3]), st.Moments(*fwd[5:8]), st.Moments(*bwd[0:3])
        activation_var = st.variance(out)
        # Unmeasured (no kernels, or a step the loss scaler skipped): NaN.
        optimizer_ran = measured > 0.0
        row = {
            "activation_mean": st.mean(out),
            "activation_var": activation_var,
            "activation_gain": activation_var / st.variance(inp),
            "gradient_var": st.variance(grad),
            "gradient_norm": tf.where(optimizer_ran, tf.sqrt(grad_sq), nan),
            "update_ratio": tf.where(
                optimizer_ran, tf.sqrt(delta_sq) / tf.sqrt(weight_sq), nan
            ),
            "saturation_fraction": (
                fwd[4] / out.count if self.tracks_saturation else nan
            ),
            "activation_nonfinite": fwd[3],
            # No gradient reached the layer at all: nothing to count.
            "gradient_nonfinite": tf.where(grad.count + bwd[3] > 0, bwd[3], nan),
        }
        if self.tracks_death and self.unit_activity is not None:
            activity = tf.convert_to_tensor(self.unit_activity)
            self.unit_window.assign_add(activity)
            units = tf.cast(tf.size(activity), tf.float32)
            dead = tf.reduce_sum(st.as_float32(tf.equal(activity, 0.0)))
            row["dead_units"] = dead
            row["dead_fraction"] = dead / units
            row["dead_units_window"] = tf.reduce_sum(
                st.as_float32(tf.equal(self.unit_window, 0.0))
            )
            self.unit_activity.assign(tf.zeros_like(activity))
        if self.batch_norm is not None:
            row.update(self._batch_norm_row())
        # A layer skipped on the next recorded step must not show stale data.
        for variable in (self.forward, self.backward, self.optimizer_sums):
            variable.assign(tf.zeros(variable.shape))
        return tf.stack([row.get(name, nan) for name in SNAPSHOT_METRICS])

    def _batch_norm_row(self):
        layer = self.layer
        count, mean, m2, moving_mean, moving_var = tf.unstack(self.batch_norm)
        batch = st.Moments(count, mean, m2)
        skew = tf.abs(mean - moving_mean) / tf.sqrt(moving_var + layer.epsilon)
        self.batch_norm.assign(tf.zeros(self.batch_norm.shape))
        return {
            "bn_batch_mean": tf.reduce_mean(st.mean(batch)),
            "bn_batch_var": tf.reduce_mean(st.variance(batch)),
            "bn_skew": tf.reduce_mean(skew),
            "bn_moving_mean": _channel_average(layer.moving_mean),
            "bn_moving_var": _channel_average(layer.moving_variance),
            "bn_gamma": _channel_average(getattr(layer, "gamma", None)),
            "bn_beta": _channel_average(getattr(layer, "beta", None)),
        }

    def reset_window(self):
        if self.unit_window is not None:
            self.unit_window.assign(tf.zeros_like(self.unit_window))


def _channel_average(variable):
    if variable is None:
        return tf.constant(_NAN)
    return tf.reduce_mean(st.as_float32(variable))


class OptimizerProbe:
    """Measures kernel gradients and updates around `optimizer.apply`.

    Args:
        optimizer: The model's `keras.optimizers.Optimizer`.
        probes: The `LayerProbe`s whose kernels to measure.
        context: The `CaptureContext` of the model.
    """

    def __init__(self, optimizer, probes, context):
        # A LossScaleOptimizer hands scaled gradients to `apply` and the
        # unscaled ones to its inner optimizer: measure the real gradients.
        self.optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        self._context = context
        self._probes = probes

    @property
    def active(self):
        return self._context.switch.active

    def install(self):
        _MethodHook.add(self.optimizer, "apply", self, _apply_with_probes)

    def uninstall(self):
        _MethodHook.remove(self.optimizer, "apply", self)

    def before_apply(self, grads, trainable_variables):
        """The global gradient and old value of every watched kernel, by
        probe, read before the update."""
        owners = {}
        for probe in self._probes:
            for index, kernel in enumerate(probe.kernels):
                owners[id(kernel)] = (probe, index)
        per_probe = {}
        for grad, variable in zip(grads, trainable_variables):
            owner = owners.get(id(variable))
            if owner is not None and grad is not None:
                probe, index = owner
                slots = per_probe.setdefault(probe, [None] * len(probe.kernels))
                # Replicas hold their own batch's share: sum them.
                global_grad = self._context.replicas.sum(grad)
                slots[index] = (global_grad, tf.identity(variable.value))
        return per_probe

    def after_apply(self, per_probe):
        for probe, slots in per_probe.items():
            if all(s is not None for s in slots):
                probe.record_optimizer_step(
                    [s[0] for s in slots], [s[1] for s in slots]
                )


def _apply_with_probes(original, probes, args, kwargs):
    """`optimizer.apply(grads, trainable_variables)`, measured by each active
    probe."""
    grads, trainable_variables = (list(args) + [None, None])[:2]
    grads = kwargs.get("grads", grads)
    trainable_variables = kwargs.get("trainable_variables", trainable_variables)
    if trainable_variables is None:  # Nothing to tell the kernels apart by.
        return original(*args, **kwargs)
    measured = [p.before_apply(grads, trainable_variables) for p in probes]
    result = original(*args, **kwargs)
    for probe, per_probe in zip(probes, measured):
        probe.after_apply(per_probe)
    return result


def _loss_scale(optimizer):
    """A function reading a LossScaleOptimizer's current scale, or None."""
    if getattr(optimizer, "inner_optimizer", None) is None:
        return None

    def current_scale():
        # As Keras' own `scale_loss`: the variable exists once built.
        if optimizer.built:
            return st.as_float32(optimizer.dynamic_scale)
        return tf.constant(float(optimizer.initial_scale))

    return current_scale


class _TrainFunctions:
    """Which train function a model runs next, for every GradWatch on it.

    Keras builds its train function once. Steps nobody records run it as it
    is. A step that some GradWatch instances record runs an instrumented copy
    traced with exactly their probes capturing (one copy per distinct set,
    traced when first needed), so two GradWatch on one model never see each
    other's hooks, and a step both record is one step, not two. A GradWatch's
    own copy is kept by its `Instrumentation`, so the next `fit` with the same
    callback does not trace it again.

    Args:
        model: A compiled `keras.Model`.
    """

    _of_model = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model):
        if model not in cls._of_model:
            cls._of_model[model] = cls(model)
        return cls._of_model[model]

    @classmethod
    def members_of(cls, model):
        functions = cls._of_model.get(model)
        return list(functions.members) if functions else []

    def __init__(self, model):
        self.model = model
        self.plain = model.make_train_function() or model.train_function
        self.members = []
        self._requested = []
        self._instrumented = {}

    def join(self, member):
        self.members.append(member)

    def leave(self, member):
        if member in self.members:
            self.members.remove(member)
        if member in self._requested:
            self._requested.remove(member)
        for key in [k for k in self._instrumented if member in k]:
            del self._instrumented[key]  # Frees its traced graphs.
        if not self.members:
            if self.model.train_function is self._run_recorded_step:
                self.model.train_function = self.plain
            type(self)._of_model.pop(self.model, None)

    def request(self, member):
        """Makes the next step one that `member` records."""
        if member not in self._requested:
            self._requested.append(member)
        self.model.train_function = self._run_recorded_step

    def _run_recorded_step(self, iterator):
        # One shot: whatever happens, the next step is a plain one.
        model = self.model
        model.train_function = self.plain
        recording, self._requested = tuple(self._requested), []
        function = self._function_for(recording)
        switches = [member.switch for member in recording]
        for switch in switches:
            switch.active = True
        try:
            return function(iterator)
        finally:
            for switch in switches:
                switch.active = False
                switch.known_moments = {}

    def _function_for(self, recording):
        if len(recording) == 1:
            (member,) = recording
            plain, function = member.own_train_function or (None, None)
            if plain is not self.plain:  # Never traced, or Keras' changed.
                function = self._trace_with(recording)
                member.own_train_function = (self.plain, function)
            return function
        key = frozenset(recording)
        if key not in self._instrumented:
            self._instrumented[key] = self._trace_with(recording)
        return self._instrumented[key]

    def _trace_with(self, recording):
        """A copy of Keras' train function whose every trace starts a new
        capture generation for `recording`."""
        model = self.model
        keras_train_step = model.train_step

        def train_step_in_new_generation(data):
            for member in recording:
                member.switch.new_generation()
            return keras_train_step(data)

        # Keras binds `train_step` when it makes the function: the copy gets
        # the wrapper, the model keeps its own.
        object.__setattr__(model, "train_step", train_step_in_new_generation)
        try:
            model.make_train_function(force=True)
        finally:
            object.__delattr__(model, "train_step")
            instrumented, model.train_function = model.train_function, self.plain
        return instrumented


class Instrumentation:
    """Installs probes on a model and runs its recorded steps.

    Args:
        model: A compiled `keras.Model`.
        selected: `(path, layer, nonlinearity)` for every layer to watch.
        saturation_threshold: See `GradWatch`.
        keep: Optional predicate on a layer, checked once the first recorded
            step has built every layer; probes it rejects are dropped.
    """

    def __init__(self, model, selected, saturation_threshold, keep=None):
        self.model = model
        self.optimizer = model.optimizer
        self._keep = keep
        self.switch = CaptureSwitch()
        self.replicas = Replicas(model.distribute_strategy)
        self._unwatchable = {}
        self._seen = []
        context = CaptureContext(
            self.switch,
            self.replicas,
            saturation_threshold,
            _loss_scale(model.optimizer),
            self._mark_unwatchable,
            self._mark_seen,
        )
        self.attached = False
        self.probes = [
            LayerProbe(layer, path, nonlinearity, context)
            for path, layer, nonlinearity in selected
        ]
        self.optimizer_probe = OptimizerProbe(model.optimizer, self.probes, context)
        self._train_functions = None
        # `(Keras' train function, its instrumented copy)` for steps only
        # this instrumentation records, kept across fits.
        self.own_train_function = None
        self._snapshot_function = None
        self._ordered = None
        # The last step this instrumentation was told about (see `step`).
        self._last_step = None

    def _mark_unwatchable(self, probe, reason):
        if probe.path not in self._unwatchable:
            self._unwatchable[probe.path] = reason
            warnings.warn(
                f"GradWatch cannot watch layer '{probe.path}': {reason}. "
                "Training goes on without it.",
                stacklevel=2,
            )

    def _mark_seen(self, probe):
        if probe not in self._seen:
            self._seen.append(probe)

    def _optimizer_step(self):
        return int(self.model.optimizer.iterations.numpy())

    def attach(self):
        """Installs the hooks; other GradWatch on the model keep theirs."""
        step = self._optimizer_step()
        # Every GradWatch of one `fit` attaches before its first step: one
        # that attached at an earlier step belongs to an earlier fit that
        # was interrupted before it could detach.
        self._detach_stale(
            [m for m in _TrainFunctions.members_of(self.model) if m._attached_at != step]
        )
        self._attached_at = step
        self._last_step = step - 1
        for probe in self.probes:
            probe.install()
        self.optimizer_probe.install()
        self._train_functions = _TrainFunctions.of(self.model)
        self._train_functions.join(self)
        self.attached = True

    def step(self, step):
        """Tells the instrumentation that the step numbered `step` is next.

        Every GradWatch of a `fit` hears of every step: one that did not
        hear of the step before this one is left over from an interrupted
        fit (it attached at the same step as this one, so `attach` could not
        tell) and is detached.
        """
        previous, self._last_step = self._last_step, step
        self._detach_stale(
            [
                m
                for m in _TrainFunctions.members_of(self.model)
                if m is not self and m._last_step < previous
            ]
        )

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
        """Removes this instrumentation's hooks. Once every GradWatch on the
        model has detached, the model is as it was before."""
        self.attached = False
        for probe in self.probes:
            probe.uninstall()
        self.optimizer_probe.uninstall()
        if self._train_functions is not None:
            self._train_functions.leave(self)
            self._train_functions = None

    def record_next_step(self):
        """Makes the next call of `model.train_function` record for us."""
        self._train_functions.request(self)

    @property
    def watched(self):
        """Probes that recorded, in forward (depth) order."""
        if self._ordered is None:
            self._ordered = [
                p
                for p in self._seen
                if p.path not in self._unwatchable
                and (self._keep is None or self._keep(p.layer))
            ]
        return self._ordered

    def snapshot(self):
        """Reads and resets every probe: a `[metrics, layers]` numpy array."""
        probes = self.watched
        if not probes:
            return np.zeros((len(SNAPSHOT_METRICS), 0), np.float32)
        if self._snapshot_function is None:

            # XLA fuses the many tiny reductions into one kernel; it is not
            # used on replicated (ON_READ) state.
            @tf.function(autograph=False, jit_compile=not self.replicas.distributed)
            def snapshot_all():
                return tf.stack([p.snapshot() for p in probes], axis=1)

            self._snapshot_function = snapshot_all
        with self.replicas.strategy.scope():
            return self._snapshot_function().numpy()

    def reset_windows(self):
        for probe in self.probes:
            probe.reset_window()
