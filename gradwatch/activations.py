"""What GradWatch knows about each nonlinearity.

For every activation it can recognise, a `Nonlinearity` says where its flat
(saturated) region is, whether it has a hard floor at which a unit is dead,
and which initialisation keeps variance for it (Glorot, He or LeCun).
Saturation is judged on the *output* y = f(x), from the derivative f'(x)
written as a function of y, so nothing else needs to be captured.
"""

import keras
from keras import ops

GLOROT, HE, LECUN = "glorot", "he", "lecun"

_SELU_SCALE = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772


class Nonlinearity:
    """A recognised activation.

    Args:
        name: Canonical name, e.g. `"relu"`.
        init: The initialisation family that preserves variance for it:
            `"glorot"`, `"he"` or `"lecun"`.
        saturated: None, or a function `(y, threshold) -> bool tensor` that is
            True where f'(x) < threshold * max f'.
        floor: None, or the output value at which a unit is dead (0.0 for
            ReLU): every example at the floor means zero gradient.
    """

    def __init__(self, name, init, saturated=None, floor=None):
        self.name = name
        self.init = init
        self.saturated = saturated
        self.floor = floor

    def __repr__(self):
        return f"Nonlinearity({self.name!r})"


def _logistic_saturated(y, threshold):
    # sigmoid and softmax: f' = y (1 - y), maximum 1/4.
    return y * (1.0 - y) < 0.25 * threshold


def _tanh_saturated(y, threshold):
    return 1.0 - ops.square(y) < threshold


def _softsign_saturated(y, threshold):
    return ops.square(1.0 - ops.abs(y)) < threshold


def _clipped(low, high):
    # Piecewise-linear activations are flat (f' = 0) at their clip values.
    def saturated(y, threshold):
        del threshold
        return ops.logical_or(y <= low, y >= high)

    return saturated


def _elu_saturated(alpha, scale=1.0):
    # Negative tail: f'(x) = y + scale * alpha, maximum max(scale, scale*alpha).
    peak = max(scale, scale * alpha)

    def saturated(y, threshold):
        return ops.logical_and(y < 0.0, y + scale * alpha < threshold * peak)

    return saturated


LINEAR = Nonlinearity("linear", GLOROT)

_BY_NAME = {
    "linear": LINEAR,
    "relu": Nonlinearity("relu", HE, floor=0.0),
    "relu6": Nonlinearity("relu6", HE, floor=0.0),
    "leaky_relu": Nonlinearity("leaky_relu", HE),
    "prelu": Nonlinearity("prelu", HE),
    "elu": Nonlinearity("elu", HE, saturated=_elu_saturated(1.0)),
    "selu": Nonlinearity(
        "selu", LECUN, saturated=_elu_saturated(_SELU_ALPHA, _SELU_SCALE)
    ),
    "gelu": Nonlinearity("gelu", HE),
    "silu": Nonlinearity("silu", HE),
    "mish": Nonlinearity("mish", HE),
    "softplus": Nonlinearity("softplus", HE),
    "sigmoid": Nonlinearity("sigmoid", GLOROT, _logistic_saturated),
    "softmax": Nonlinearity("softmax", GLOROT, _logistic_saturated),
    "tanh": Nonlinearity("tanh", GLOROT, _tanh_saturated),
    "softsign": Nonlinearity("softsign", GLOROT, _softsign_saturated),
    "hard_sigmoid": Nonlinearity("hard_sigmoid", GLOROT, _clipped(0.0, 1.0)),
    "hard_tanh": Nonlinearity("hard_tanh", GLOROT, _clipped(-1.0, 1.0)),
}
_ALIASES = {"swish": "silu", "hard_silu": "silu", "hard_swish": "silu"}


def by_name(name):
    """The `Nonlinearity` called `name`, or None if GradWatch doesn't know it."""
    name = _ALIASES.get(name, name)
    return _BY_NAME.get(name)


def _function_name(fn):
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        return fn
    # Keras' own activations by their names: `serialize` would import
    # TensorFlow, which a JAX user need not load.
    name = getattr(fn, "__name__", None)
    try:
        if name is not None and keras.activations.get(name) is fn:
            return name
    except (ValueError, TypeError):
        pass
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # Custom callables Keras cannot serialise.
        name = getattr(fn, "__name__", None)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return name if isinstance(name, str) else None


def of_layer(layer):
    """The nonlinearity applied last in `layer`, or None if unknown.

    Handles activations folded into a layer (`Dense(..., activation="relu")`)
    and the standalone `Activation`, `ReLU`, `LeakyReLU`, `PReLU`, `ELU` and
    `Softmax` layers.

    Args:
        layer: A `keras.layers.Layer`.

    Returns:
        A `Nonlinearity`, `LINEAR` for layers without one, or None for an
        activation GradWatch does not recognise.
    """
    layers = keras.layers
    if isinstance(layer, layers.ReLU):
        if float(layer.negative_slope) > 0.0:
            return _BY_NAME["leaky_relu"]
        if layer.max_value is not None:
            return _BY_NAME["relu6"]
        return _BY_NAME["relu"]
    if isinstance(layer, layers.LeakyReLU):
        return _BY_NAME["leaky_relu"]
    if isinstance(layer, layers.PReLU):
        return _BY_NAME["prelu"]
    if isinstance(layer, layers.ELU):
        alpha = float(layer.alpha)
        return Nonlinearity("elu", HE, saturated=_elu_saturated(alpha))
    if isinstance(layer, layers.Softmax):
        return _BY_NAME["softmax"]
    if isinstance(layer, layers.RNN) or isinstance(
        layer, getattr(layers, "Bidirectional", ())
    ):
        # An RNN's output is a gated mix, not f(x) of one nonlinearity.
        return LINEAR
    if hasattr(layer, "activation"):
        name = _function_name(layer.activation)
        return by_name(name) if name is not None else None
    return LINEAR


def is_activation_layer(layer):
    """True for layers whose whole job is a nonlinearity."""
    layers = keras.layers
    return isinstance(
        layer,
        (
            layers.Activation,
            layers.ReLU,
            layers.LeakyReLU,
            layers.PReLU,
            layers.ELU,
            layers.Softmax,
        ),
    )
