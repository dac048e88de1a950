"""The init audit: each kernel's variance beside what Glorot, He and LeCun
initialisation expect for its fans, and which of them its activation calls for;
with the two facts about the model the findings need besides the records: which
layers' outputs go straight into a cross-entropy loss, and each BatchNorm
layer's momentum.

Runs once, on the host, when training begins.
"""

import math
import re

import keras
import numpy as np

from . import activations
from . import keras_internals as internals


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
    """The variance each scheme gives a kernel with these fans, in its
    papers' default mode (Glorot: fan_avg; He and LeCun: fan_in)."""
    return {
        activations.GLOROT: 2.0 / (fan_in + fan_out),
        activations.HE: 2.0 / fan_in,
        activations.LECUN: 1.0 / fan_in,
    }


def accepted_variances(fan_in, fan_out):
    """`(low, high)`: the kernel variances each scheme accepts.

    Glorot and He preserve variance forward with fan_in, backward with
    fan_out; both papers allow either (He et al. 2015, section 2.2: the other
    direction then drifts by a constant, not by a factor per layer), and
    fan_avg lies between. Keras' EfficientNet and torchvision's ResNets use
    fan_out. SELU's self-normalising fixed point needs the weights of each
    unit to have a sum of squares of 1 over its inputs: LeCun is fan_in only.
    """
    small, large = min(fan_in, fan_out), max(fan_in, fan_out)
    return {
        activations.GLOROT: (1.0 / large, 1.0 / small),
        activations.HE: (2.0 / large, 2.0 / small),
        activations.LECUN: (1.0 / fan_in, 1.0 / fan_in),
    }


_CROSS_ENTROPY = re.compile(r"crossentropy|cross_entropy", re.IGNORECASE)


def _loss_names(loss):
    """The names of a compiled loss (`str`, `Loss`, function, list or dict)."""
    if loss is None:
        return []
    if isinstance(loss, dict):
        return [n for v in loss.values() for n in _loss_names(v)]
    if isinstance(loss, (list, tuple)):
        return [n for v in loss for n in _loss_names(v)]
    if isinstance(loss, str):
        return [loss]
    name = getattr(loss, "fn", None) or loss  # LossFunctionWrapper
    return [getattr(name, "__name__", None) or getattr(loss, "name", None) or type(loss).__name__]


def _feeds_batch_norm(layer):
    """Whether every layer that reads this one's output is a BatchNormalization
    (None when the graph does not say: a subclassed model)."""
    consumers = internals.consumers_of(layer)
    if not consumers:
        return None
    return all(isinstance(c, keras.layers.BatchNormalization) for c in consumers)


def loss_heads(model):
    """The layers whose outputs go straight into a cross-entropy loss.

    A functional or Sequential model compiled with cross-entropy losses only:
    its output layers. A model whose own `train_step` computes the loss (no
    compiled loss, like keras-io's GAN and VAE) does not say which loss it
    uses: the output layers of its sub-models are taken as its heads, on the
    convention those examples follow (sigmoid outputs, binary cross-entropy).

    Args:
        model: The model being trained.

    Returns:
        A list of layers.
    """
    loss = getattr(model, "loss", None)
    if loss is None:
        return [
            head for layer in getattr(model, "layers", [])
            for head in internals.output_layers(layer)
        ]
    names = _loss_names(loss)
    if names and all(n and _CROSS_ENTROPY.search(str(n)) for n in names):
        return internals.output_layers(model)
    return []


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


def audit(ordered, model=None):
    """One entry per layer with a kernel, and one per BatchNormalization layer.

    Args:
        ordered: `(path, layer, nonlinearity)` triples in depth order.
        model: The model, to find its loss heads (`loss_heads`); optional.

    Returns:
        A list of dicts. For a kernel: `layer`, `activation`, `fan_in`,
        `fan_out`, `kernel_var`, `expected` (variance per scheme in its
        default mode), `accepted` (`[low, high]` variance per scheme, see
        `accepted_variances`), `recommended` scheme, `closest` scheme to the
        actual variance, `ratio` = kernel_var / the nearest variance the
        recommended scheme accepts (1 is a match), and `loss_head`: the path
        of the layer whose output (this kernel's, or that of the activation
        layer right after it) goes straight into a cross-entropy loss, if
        any; `feeds_batch_norm`: whether only BatchNormalization reads its
        output (None if the graph does not say). For a BatchNormalization layer: `layer`, `batch_norm_momentum`.
    """
    heads = {id(layer) for layer in loss_heads(model)} if model is not None else set()
    entries = []
    for index, (path, layer, _) in enumerate(ordered):
        if isinstance(layer, keras.layers.BatchNormalization):
            entries.append({"layer": path, "batch_norm_momentum": float(layer.momentum)})
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2:
            continue
        values = np.asarray(internals.host_value(kernel), dtype=np.float64)
        fan_in, fan_out = fans(values.shape)
        expected = expected_variances(fan_in, fan_out)
        accepted = accepted_variances(fan_in, fan_out)
        nonlinearity = governing_nonlinearity(ordered, index)
        recommended = (
            nonlinearity.init if nonlinearity is not None else activations.GLOROT
        )
        kernel_var = float(values.var())
        closest = min(
            expected, key=lambda k: abs(math.log(max(kernel_var, 1e-30) / expected[k]))
        )
        low, high = accepted[recommended]
        head = None
        if id(layer) in heads:
            head = path
        elif nonlinearity is not ordered[index][2] and id(ordered[index + 1][1]) in heads:
            head = ordered[index + 1][0]  # Dense, then Activation("softmax")
        entries.append(
            {
                "layer": path,
                "activation": nonlinearity.name if nonlinearity else "unknown",
                "fan_in": fan_in,
                "fan_out": fan_out,
                "kernel_var": kernel_var,
                "expected": expected,
                "accepted": {k: list(v) for k, v in accepted.items()},
                "recommended": recommended,
                "closest": closest,
                "ratio": kernel_var / min(max(kernel_var, low), high),
                "loss_head": head,
                "feeds_batch_norm": _feeds_batch_norm(layer),
            }
        )
    return entries
