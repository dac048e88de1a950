"""The TensorFlow capture: one traced train function for every step,
measuring behind an on-device recording flag.

Unrecorded steps run the same compiled function with the flag off, and pay
for the flag test only. After Keras' step, one `cond` on the flag measures
everything the taps kept and stores the few numbers per layer in one
variable, which the host reads with one call.
"""

import tensorflow as tf

from . import keras_internals as internals
from . import measure
from .capture import Capture
from .taps import Trace


class TensorFlowCapture(Capture):
    """A `Capture` on Keras' TensorFlow backend (see `capture.Capture`)."""

    def __init__(self, model, keras_function, watched, thresholds, distributions=True,
                 initial=None):
        super().__init__(model, keras_function, watched, thresholds, distributions, initial)
        with tf.init_scope():  # Set by the host between steps.
            self._flag = tf.Variable(False, trainable=False) if self.gated else None
            self._distributions_flag = (
                tf.Variable(False, trainable=False) if self.gated else None
            )
        self._output = None
        self._distributions_output = self.replicas.variable(
            [measure.distributions_size(self.taps)]
        ) if distributions else None
        self._make_state()
        # Gated: one function for every step. Else one per kind of recorded
        # call, made when first needed (`recording_function`).
        self.function = self._make_function() if self.gated else None

    @property
    def gated(self):
        """Whether one function serves every step, measuring behind the flag.

        Distributed, a collective inside a `cond` is not allowed (MirroredStrategy
        syncs through `merge_call`): the capture's function then measures on
        every call, and runs only on recorded steps, Keras' own on the others.
        """
        return not self.replicas.distributed

    def set_recording(self, on, distributions=False):
        distributions = bool(on and distributions and self.distributions)
        if self.gated:
            if on != self._flag_value:
                self._flag.assign(on)
            if distributions != self._distributions_value:
                self._distributions_flag.assign(distributions)
        super().set_recording(on, distributions)

    # -- the taps' backend ---------------------------------------------------

    @property
    def optimizer_method(self):
        return "apply", _apply_with_taps

    def snapshot(self, values):
        return tf.nest.map_structure(tf.identity, values)

    def copy_of(self, variable):
        # Made outside the trace (a variable made while tracing makes
        # tf.function trace again), from the value it holds now.
        with tf.init_scope(), self.replicas.strategy.scope():
            copy = tf.Variable(variable.value, trainable=False)
            value = tf.cast(variable.value, tf.float64)
            return copy, float(tf.reduce_sum(value * value))

    def in_step(self, trace):
        return tf.compat.v1.get_default_graph() is trace.graph

    def hand_over(self, trace, tap, call):
        trace.calls.setdefault(tap, []).append(call)

        @tf.custom_gradient
        def identity_handing_over_gradient(t):
            def gradient(dy):
                call.gradients.append(dy)
                return dy

            return tf.identity(t), gradient

        return identity_handing_over_gradient(call.y)

    # -- state ---------------------------------------------------------------

    def _make_state(self, sizes=None):
        """Makes the output, now if its size is known, and copies the
        kernels' initial values: a variable made while tracing makes
        tf.function trace again, and only its first trace may make any."""
        sizes = sizes if sizes is not None else self._known_sizes()
        if sizes is not None and self._output is None:
            self._layout = sizes
            self._output = self.replicas.variable(
                [measure.size(self.taps, self.thresholds, sizes)]
            )
        self.initial.take(self.kernels, self.copy_of)

    def _when_recording(self, make_ops):
        if not self.gated:
            make_ops()
            return
        tf.cond(
            self._flag,
            lambda: _group(make_ops()),
            lambda: tf.constant(False),
        )

    # -- tracing ---------------------------------------------------------------

    def _make_function(self, distributions=False):
        """Keras' train function, made again around our train step.

        Args:
            distributions: Whether an ungated function measures the
                distributions (a gated one measures them behind their own
                flag).
        """
        model = self.model
        keras_train_step = model.train_step

        def train_step(data):
            Capture.traces += 1
            self._make_state()
            kernels = self.kernels
            before = self._values_before(kernels)
            self.tracing = trace = Trace(tf.compat.v1.get_default_graph())
            try:
                logs = keras_train_step(data)
            finally:
                self.tracing = None
            self._report_elsewhere(trace)
            # Layers built by this very trace (a subclassed model's) are known
            # only now; tf.function traces again to lift the new variables.
            self._make_state(None if self._output is not None else self._sizes_seen(trace))
            self._when_recording(lambda: self._record(trace, kernels, before, distributions))
            return logs

        return internals.make_train_function(model, train_step)

    def _record(self, trace, kernels, before, distributions):
        """The assignments of a recorded step."""
        ops = [self._output.assign(self._measure(trace, kernels, before))]
        if self.gated and self.distributions:
            ops.append(tf.cond(
                self._distributions_flag,
                lambda: _group([self._distributions_output.assign(
                    self._measure_distributions(trace)
                )]),
                lambda: tf.constant(False),
            ))
        elif distributions:
            ops.append(self._distributions_output.assign(self._measure_distributions(trace)))
        return ops

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

    # -- after a call ----------------------------------------------------------

    def _finish_call(self, outputs, recorded):
        if not recorded:
            return outputs, None
        # The call measured its last step: the optimizer's count says which
        # (a call may run fewer steps than `steps_per_execution`).
        return outputs, internals.steps_applied(self.model) - 1

    def packed(self):
        with self.replicas.strategy.scope():
            return self._output.numpy()

    def packed_distributions(self):
        with self.replicas.strategy.scope():
            return self._distributions_output.numpy()


def _group(ops):
    """A value that depends on `ops`, so a `cond` branch keeps them."""
    with tf.control_dependencies(ops):
        return tf.constant(True)


def _apply_with_taps(original, taps, args, kwargs):
    """`optimizer.apply(grads, trainable_variables)`, seen by each tap."""
    grads, trainable_variables = (list(args) + [None, None])[:2]
    grads = kwargs.get("grads", grads)
    trainable_variables = kwargs.get("trainable_variables", trainable_variables)
    if trainable_variables is not None:  # Else nothing tells kernels apart.
        for tap in taps:
            tap.before_apply(list(grads), list(trainable_variables))
    return original(*args, **kwargs)
