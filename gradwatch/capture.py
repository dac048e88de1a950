"""A model's train step traced once with taps on a set of layers, and what
its recorded steps measured.

The base `Capture` is what every backend shares: the taps, the order the
layers ran in, the layers that cannot be watched and the reading of what a
recorded step stored. How the step is wrapped, how a recorded step is told
apart from the others and how the numbers leave the step are the backend's:
`capture_tensorflow` (one traced function, measuring behind an on-device
flag) and `capture_jax` (a second compiled function whose logs carry the
numbers out).
"""

import keras

from . import keras_internals as internals
from . import measure
from . import statistics as st
from .replicas import Replicas
from .taps import LayerTap, OptimizerTap


def make_capture(model, keras_function, watched, thresholds, distributions=True, initial=None):
    """The `Capture` of `model`'s backend, made with these arguments (see
    `Capture`)."""
    if keras.backend.backend() == "jax":
        from .capture_jax import JaxCapture as kind
    else:
        from .capture_tensorflow import TensorFlowCapture as kind
    return kind(model, keras_function, watched, thresholds, distributions, initial)


class Capture:
    """One model's train step with taps on a set of layers, traced once.

    Shared by every GradWatch on the model that together watch these layers
    with these saturation thresholds (see `hooks._ModelCaptures`).

    Args:
        model: A compiled `keras.Model`.
        keras_function: Keras' own train function, restored when no
            GradWatch is attached.
        watched: `(layer, nonlinearity)` pairs, one per layer.
        thresholds: The saturation thresholds to count at, in order.
        distributions: Whether recorded steps may measure the distributions
            too. Without, their ops are not traced.
        initial: The model's `InitialWeights`, shared by its captures.
    """

    # Traces of every capture's train step, for tests that count them.
    traces = 0

    def __init__(self, model, keras_function, watched, thresholds, distributions=True,
                 initial=None):
        self.model = model
        self.distributions = distributions
        self.initial = initial if initial is not None else InitialWeights()
        self.keras_function = keras_function
        self.thresholds = tuple(thresholds)
        self.replicas = Replicas.of(model)
        self.taps = [LayerTap(self, layer, nl) for layer, nl in watched]
        self.optimizer_taps = [OptimizerTap(self, o) for o in internals.optimizers_of(model)]
        self.tracing = None  # The `Trace` under way.
        self.order = []  # Taps in forward order, as first traced.
        self.unwatchable_reasons = {}  # tap -> reason
        self._functions = {}  # distributions -> an ungated recording function
        self.on_unwatchable = None
        self._flag_value = False
        self._distributions_value = False
        self._distributions_step = None  # The step the last ones are of.
        self._layout = None
        self._last_read = None
        # Before any step (the kernels of layers that the first trace
        # builds are copied with the capture's state, `_make_state`).
        self.initial.take(self.kernels, self.copy_of)

    # -- what the backend provides ---------------------------------------------

    # (method name, dispatch) of the optimizer method the taps hook.
    optimizer_method = None

    def snapshot(self, values):
        """`values` as they are now, safe from a later in-place update."""
        return values

    def copy_of(self, variable):
        """`(copy, squared norm)`: a copy of `variable`'s value as it is
        now, on its device and kept between steps, and its sum of squares as
        a float (for `InitialWeights`)."""
        raise NotImplementedError

    def in_step(self, trace):
        """Whether the op being traced belongs to the step itself."""
        return True

    def hand_over(self, trace, tap, call):
        """An identity on `call.y` whose gradient hands dLoss/dy to `call`,
        and `call` added to `trace.calls`."""
        raise NotImplementedError

    def packed(self):
        """The vector the last recorded step stored, as a numpy array."""
        raise NotImplementedError

    def packed_distributions(self):
        """The distributions vector the last step that measured them
        stored, as a numpy array."""
        raise NotImplementedError

    def _finish_call(self, outputs, recorded):
        """`(outputs for fit, number of the call's last step or None)`."""
        raise NotImplementedError

    def finish_call(self, outputs, recorded):
        """`(outputs for fit, number of the call's last step or None)`.

        Args:
            outputs: What the train function returned.
            recorded: Whether the call recorded.
        """
        outputs, last_step = self._finish_call(outputs, recorded)
        if recorded and self._distributions_value:
            self._distributions_step = last_step
        return outputs, last_step

    # -- state ---------------------------------------------------------------

    @property
    def kernel_ids(self):
        return {id(k) for tap in self.taps for k in tap.kernels}

    @property
    def kernels(self):
        return [k for tap in self.taps for k in tap.kernels]

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

    def _sizes_seen(self, trace):
        # A subclassed model's layers have no symbolic output: the traced
        # step tells their unit counts.
        sizes = []
        for tap in self.taps:
            calls = trace.calls.get(tap)
            if tap.floor is None or not calls:
                sizes.append(0)
            else:
                sizes.append(int(st.as_units(calls[0].y).shape[-1]))
        return sizes

    @property
    def xla(self):
        """Whether the train step is XLA-compiled (Keras resolves "auto")."""
        return bool(getattr(self.model, "jit_compile", False)) and not self.model.run_eagerly

    @property
    def current_function(self):
        """The train function the model runs next: ours on recorded steps,
        Keras' own on the others (a gated capture runs ours always)."""
        if self.gated:
            return self.function
        if self._flag_value:
            return self.recording_function(self._distributions_value)
        return self.keras_function

    gated = False

    def recording_function(self, distributions):
        """An ungated capture's function for recorded calls, with or without
        the distributions (made when first asked for)."""
        if distributions not in self._functions:
            self._functions[distributions] = self._make_function(distributions)
        return self._functions[distributions]

    def set_recording(self, on, distributions=False):
        """Whether the next call of the train function records, and whether
        it measures the distributions too."""
        self._flag_value = on
        self._distributions_value = bool(on and distributions and self.distributions)

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

    def _report_elsewhere(self, trace):
        for tap in trace.elsewhere - set(trace.calls):
            self.unwatchable(tap, "it is only called inside a loop or condition")

    def _measurement(self):
        return measure.Measure(self.taps, self.thresholds, self.replicas, self._layout, self.xla)

    def _measure(self, trace, kernels, before, value_of=None):
        return self._measurement()(
            trace, kernels, before, value_of, self.initial.of(kernels)
        )

    def _measure_distributions(self, trace):
        return self._measurement().distributions(trace)

    # -- reading (on the host, after a recorded step) ------------------------

    def read_distributions(self, step):
        """`{name: [taps, width] array}` (`metadata.DISTRIBUTIONS`) if the
        recorded step `step` measured the distributions, else None."""
        if self._distributions_step != step:
            return None
        return measure.unpack_distributions(self.packed_distributions(), self.taps)

    def read(self, step):
        """What the last recorded step stored: `(fields [taps, width],
        {tap: activity vector})`. Read once per step, however many
        GradWatch ask."""
        if self._last_read is None or self._last_read[0] != step:
            unpacked = measure.unpack(self.packed(), self.taps, self.thresholds, self._layout)
            self._last_read = (step, *unpacked)
        return self._last_read[1:]


class InitialWeights:
    """The watched kernels' weights as GradWatch first saw them, for
    `distance_from_init`: one copy of each kernel on its device, and its
    squared norm, taken before the first step that measures it.

    One per model, shared by its captures, so that a GradWatch made later
    (or one watching other layers) measures from the same start. Costs one
    more copy of the watched kernels' memory for as long as the model.
    """

    def __init__(self):
        self._of = {}  # id(kernel) -> (copy, squared norm)

    def take(self, kernels, copy_of):
        """Copies the kernels not copied yet, with `copy_of(kernel)`."""
        for kernel in kernels:
            if id(kernel) not in self._of:
                self._of[id(kernel)] = copy_of(kernel)

    def of(self, kernels):
        """Per kernel, `(copy, squared norm)`, or None if not taken."""
        return [self._of.get(id(k)) for k in kernels]
