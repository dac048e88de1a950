"""The init audit: each kernel's variance beside what Glorot, He and LeCun
initialisation expect for its fans, and which of them its activation calls for.

Runs once, on the host, when training begins.
"""

import math

import numpy as np

from . import activations


def fans(shape):
    """`(fan_in, fan_out)` of a kernel, as Keras' initialisers compute them.

    Args:
        shape: The kernel's shape; a conv kernel's receptive field multiplies
            both fans.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def expected_variances(fan_in, fan_out):
    """The variance each scheme gives a kernel with these fans."""
    return {
        activations.GLOROT: 2.0 / (fan_in + fan_out),
        activations.HE: 2.0 / fan_in,
        activations.LECUN: 1.0 / fan_in,
    }


def governing_nonlinearity(ordered, index):
    """The nonlinearity a kernel's init should serve.

    The layer's own activation, or, for a linear layer directly followed by a
    standalone activation layer (`Dense` then `ReLU`), that one.

    Args:
        ordered: `(path, layer, nonlinearity)` triples in depth order.
        index: The position of the kernel's layer in `ordered`.
    """
    own = ordered[index][2]
    if own is not activations.LINEAR or index + 1 >= len(ordered):
        return own
    _, following, nonlinearity = ordered[index + 1]
    if activations.is_activation_layer(following):
        return nonlinearity
    return own


def audit(ordered):
    """One entry per layer with a kernel.

    Args:
        ordered: `(path, layer, nonlinearity)` triples in depth order.

    Returns:
        A list of dicts: `layer`, `activation`, `fan_in`, `fan_out`,
        `kernel_var`, `expected` (variance per scheme), `recommended` scheme,
        `closest` scheme to the actual variance, and `ratio` = kernel_var /
        expected[recommended] (1 is a match).
    """
    entries = []
    for index, (path, layer, _) in enumerate(ordered):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2:
            continue
        values = np.asarray(kernel.numpy(), dtype=np.float64)
        fan_in, fan_out = fans(values.shape)
        expected = expected_variances(fan_in, fan_out)
        nonlinearity = governing_nonlinearity(ordered, index)
        recommended = (
            nonlinearity.init if nonlinearity is not None else activations.GLOROT
        )
        kernel_var = float(values.var())
        closest = min(
            expected, key=lambda k: abs(math.log(max(kernel_var, 1e-30) / expected[k]))
        )
        entries.append(
            {
                "layer": path,
                "activation": nonlinearity.name if nonlinearity else "unknown",
                "fan_in": fan_in,
                "fan_out": fan_out,
                "kernel_var": kernel_var,
                "expected": expected,
                "recommended": recommended,
                "closest": closest,
                "ratio": kernel_var / expected[recommended],
            }
        )
    return entries
