"""The taps: what a layer's `call` and an optimizer's `apply` hand over to a
capture while its train step is traced (inputs, outputs, dLoss/d(output),
BatchNorm's moving statistics, kernel gradients and loss scales)."""

import keras

from . import keras_internals as internals
from . import statistics as st


def is_float_tensor(x):
    """Whether `x` is a backend tensor of floats, of known rank."""
    if not (keras.ops.is_tensor(x) or type(x).__name__ == "ResourceVariable"):
        return False
    try:
        dtype = keras.backend.standardize_dtype(x.dtype)
        len(x.shape)  # TensorFlow's unknown rank raises.
    except (TypeError, ValueError):
        return False
    return dtype in ("float16", "bfloat16", "float32", "float64")


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


class Trace:
    """What one trace of the train step kept, for the measurement."""

    def __init__(self, graph=None):
        self.graph = graph  # TensorFlow's graph being traced (else None)
        self.calls = {}  # tap -> [_Call]
        self.aliases = {}  # id of a tap's output -> the layer's own output
        self.kept = []
        self.elsewhere = set()  # taps called in another graph
        # id(variable) -> _KernelGradient (this replica's)
        self.kernel_gradients = {}
        self.loss_scale = None  # The first loss-scaling optimizer's scale.


class _KernelGradient:
    """A watched kernel's gradient as its optimizer received it: scaled by
    `scale` (a loss-scaling optimizer's, else None), and applied only if
    every gradient of `batch` (that optimizer's) is finite (None: always).

    The check itself is left to the measuring branch, which runs on recorded
    steps only: made here, it would read every gradient on every step.
    """

    def __init__(self, gradient, scale=None, batch=None):
        self.gradient = gradient
        self.scale = scale
        self.batch = batch


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
        return self.capture.snapshot(
            (layer.moving_mean.value, layer.moving_variance.value)
        )

    def after_call(self, args, kwargs, outputs, moving_before):
        trace = self.capture.tracing
        flat = keras.tree.flatten(outputs)
        y = flat[0] if flat else None
        if not is_float_tensor(y):
            self.capture.unwatchable(self, "its first output is not a float tensor")
            return outputs
        if not self.capture.in_step(trace):
            # A loop or condition of the model, or Keras inferring shapes in
            # a scratch graph: not a tensor of the step itself.
            trace.elsewhere.add(self)
            return outputs
        inputs = keras.tree.flatten((args, kwargs))
        x = inputs[0] if inputs and is_float_tensor(inputs[0]) else None
        if self.is_batch_norm and x is not None and moving_before is None:
            moving_before = self.moving_statistics()  # Built by this call.
        call = _Call(x, y, moving_before)
        self.capture.seen(self)
        # The backend's identity on y whose gradient hands dLoss/dy (and,
        # where the forward values cannot outlive their trace, x and y) to
        # `call`, which joins the trace's calls.
        flat[0] = self.capture.hand_over(trace, self, call)
        trace.aliases[id(flat[0])] = call.y
        trace.kept.append(flat[0])  # Alive while its id is a key.
        return keras.tree.pack_sequence_as(outputs, flat)


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
        method, dispatch = self.capture.optimizer_method
        _MethodHook.add(self.optimizer, method, self, dispatch)

    def uninstall(self):
        _MethodHook.remove(self.optimizer, self.capture.optimizer_method[0], self)

    def before_apply(self, grads, trainable_variables, scale=None):
        """Keeps the watched kernels' gradients.

        Args:
            grads: The gradients, in the order of `trainable_variables`.
            trainable_variables: The variables they are for.
            scale: The loss scale the gradients carry (None: the
                optimizer's own, read now; TensorFlow only).
        """
        trace = self.capture.tracing
        if not self.capture.in_step(trace):
            return  # Applied inside a loop or condition: not usable after it.
        if scale is None:
            scale = internals.loss_scale(self.optimizer)
            if scale is not None:
                scale = self.capture.snapshot(st.as_float32(scale))
        batch = None
        if scale is not None:
            # The scale the gradients carry, before `apply` changes it; the
            # loss scaler skips the update when any gradient is not finite.
            batch = [g for g in grads if g is not None]
            if trace.loss_scale is None:
                trace.loss_scale = scale
        watched = self.capture.kernel_ids
        for grad, variable in zip(grads, trainable_variables):
            if grad is not None and id(variable) in watched:
                trace.kernel_gradients[id(variable)] = _KernelGradient(grad, scale, batch)
