"""The first-to-last gradient variance ratio, and the main chain it spans.

One definition, used by the `vanishing_gradients` and `exploding_gradients`
rules, the headline scalar `gradient_var_ratio_first_to_last` and the demo's
table: `gradient_var` of the first layer of the *main chain* over that of
its last. The main chain is the largest set of like layers (same kind, same
activation, same (sub-)model) that carry a gradient, in depth order.
Comparing like with like keeps a read-out layer or BatchNorm's rescaling
from passing for a trend, and a GAN's generator and discriminator (two
networks, two losses) from passing for one chain.
"""

import collections

import numpy as np

from .view import View


def _signature(view, layer):
    """What kind of layer: like layers form the chain gradients are compared on."""
    audit = view.audit_of(view.layers[layer])
    return (
        view.layers[layer].rpartition("/")[0],  # the (sub-)model it is in
        bool(view.applies("bn_skew")[layer] or view.applies("bn_batch_var")[layer]),
        bool(view.applies("gradient_norm")[layer]),
        bool(view.applies("saturation_fraction")[layer]),
        bool(view.applies("dead_units")[layer]),
        audit.get("activation") if audit else None,
    )


def main_chain(view):
    """Indices of the main chain's layers in depth order (see the module
    docstring); empty if fewer than 2. Computed once per `View`."""
    if "main_chain" not in view.cache:
        grad = view.get("gradient_var")
        carries = np.isfinite(grad).any(axis=0) & (np.nan_to_num(grad, nan=0.0) > 0).any(axis=0)
        groups = collections.OrderedDict()
        for layer in range(len(view.layers)):
            if carries[layer]:
                groups.setdefault(_signature(view, layer), []).append(layer)
        best = []
        for members in groups.values():
            span = members[-1] - members[0]
            if len(members) > len(best) or (
                len(members) == len(best) and best and span > best[-1] - best[0]
            ):
                best = members
        view.cache["main_chain"] = best if len(best) >= 2 else []
    return view.cache["main_chain"]


def first_to_last(gradient_var, chain):
    """`gradient_var` of the chain's first layer over its last one's, NaN
    where that is not a positive finite number.

    Args:
        gradient_var: Per-layer values `[layers]`, or `[steps, layers]`.
        chain: Layer indices (`main_chain`); fewer than 2 give NaN.

    Returns:
        A float, or a float array over the steps.

    Example:

    >>> first_to_last(np.array([1e-6, 1e-4, 1e-2]), [0, 2])
    0.0001
    """
    gradient_var = np.asarray(gradient_var, np.float64)
    if len(chain) < 2:
        ratio = np.full(gradient_var.shape[:-1], np.nan)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = gradient_var[..., chain[0]] / gradient_var[..., chain[-1]]
        ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan)
    return float(ratio) if ratio.ndim == 0 else ratio


def gradient_var_ratio(recording):
    """The first-to-last gradient variance ratio at every recorded step.

    Args:
        recording: A recording-like object (see `gradwatch.findings.view`),
            or a `View` of one.

    Returns:
        `(chain, ratio)`: the main chain's layer names in depth order (empty
        if it has fewer than 2 layers) and a float array over the recorded
        steps, NaN where either end has no positive finite value.

    Example:

    >>> chain, ratio = gradient_var_ratio(gradwatch.load("runs/exp1"))
    """
    view = recording if isinstance(recording, View) else View(recording)
    chain = main_chain(view)
    ratio = first_to_last(view.get("gradient_var"), chain)
    return [view.layers[i] for i in chain], ratio
