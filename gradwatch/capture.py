"""A model's train step traced once with taps on a set of layers, measuring
behind an on-device recording flag."""

import tensorflow as tf

from . import keras_internals as internals
from . import measure
from . import statistics as st
from .replicas import Replicas
from .taps import LayerTap, OptimizerTap, _Trace


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
            self._output = self.replicas.variable(
                [measure.size(self.taps, self.thresholds, sizes)]
            )

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

    def _measure(self, trace, kernels, before):
        measure_step = measure.Measure(
            self.taps, self.thresholds, self.replicas, self._layout, self.xla
        )
        return measure_step(trace, kernels, before)

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

    # -- reading (on the host, after a recorded step) ------------------------

    def read(self, step):
        """What the last recorded step stored: `(fields [taps, width],
        {tap: activity vector})`. Read once per step, however many
        GradWatch ask."""
        if self._last_read is None or self._last_read[0] != step:
            with self.replicas.strategy.scope():
                packed = self._output.numpy()
            self._last_read = (step, *measure.unpack(packed, self.taps, self.thresholds, self._layout))
        return self._last_read[1:]


def _group(ops):
    """A value that depends on `ops`, so a `cond` branch keeps them."""
    with tf.control_dependencies(ops):
        return tf.constant(True)
