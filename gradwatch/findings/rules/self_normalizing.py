"""Rule `not_self_normalizing`: a SELU stack whose outputs drift from mean 0
and variance 1, with the likely cause (init, inputs, a layer that breaks
the stack, or the weights' drift)."""

import math

import numpy as np

from .. import model, remedies, text
from ..sustained import sustained


def _selu_layers(view):
    """`(kernel_layer, output_layer)` index pairs of the SELU stack."""
    saturates = view.applies("saturation_fraction")
    has_kernel = view.applies("gradient_norm")
    pairs = []
    for entry in view.audit:
        if entry.get("activation") != "selu" or entry.get("layer") not in view.index:
            continue
        kernel = view.index[entry["layer"]]
        if saturates[kernel]:
            pairs.append((kernel, kernel))  # Dense(activation="selu")
        elif kernel + 1 < len(view.layers) and saturates[kernel + 1] and not has_kernel[kernel + 1]:
            pairs.append((kernel, kernel + 1))  # Dense, then Activation("selu")
    return pairs


def _wrong_init(view, th):
    """`(layer, ratio)` of SELU kernels off LeCun's variance."""
    bound = math.log(th.init_ratio)
    wrong = []
    for entry in view.audit:
        if entry.get("activation") == "selu" and entry.get("layer") in view.index:
            try:
                ratio = float(entry.get("ratio"))
            except (TypeError, ValueError):
                continue
            if ratio > 0 and abs(math.log(ratio)) > bound:
                wrong.append((view.index[entry["layer"]], ratio))
    return wrong


def _input_variance(view, kernel):
    """The median variance of the inputs of layer `kernel` (output variance
    over gain), NaN if unknown."""
    gain = view.get("activation_gain")[:, kernel]
    out_var = view.get("activation_var")[:, kernel]
    with np.errstate(divide="ignore", invalid="ignore"):
        in_var = out_var / gain
    in_var = in_var[np.isfinite(in_var) & (in_var > 0)]
    return float(np.median(in_var)) if in_var.size else float("nan")


def check(view, th):
    pairs = _selu_layers(view)
    if not pairs:
        return []
    outputs = [o for _, o in pairs]
    mean = view.get("activation_mean")[:, outputs]
    var = view.get("activation_var")[:, outputs]
    with np.errstate(divide="ignore", invalid="ignore"):
        off = (np.abs(mean) > th.selu_mean_max) | (
            np.abs(np.log(var)) > math.log(th.selu_var_factor)
        )
    hits = sustained(off, th.min_records)
    if not hits:
        return []
    flagged = hits.layers  # positions in `outputs`
    row = hits.last
    worst_var = max((var[row, i] for i in flagged if np.isfinite(var[row, i])),
                    key=lambda v: abs(math.log(v)) if v > 0 else 0, default=float("nan"))
    worst_mean = max((mean[row, i] for i in flagged if np.isfinite(mean[row, i])),
                     key=abs, default=float("nan"))
    causes, steps = [], []
    wrong = _wrong_init(view, th)
    if wrong:
        causes.append(
            f"wrong init ({text.describe_layers([view.layers[i] for i, _ in wrong], view.layers)}: "
            f"kernel variance {text.number_range([r for _, r in wrong])}\u00d7 LeCun's)"
        )
        steps.append(remedies.SELU_INIT)
    # Inputs not standardised: the first SELU kernel's input variance.
    first_kernel = pairs[0][0]
    input_variance = _input_variance(view, first_kernel)
    if np.isfinite(input_variance) and abs(math.log(input_variance)) > math.log(th.input_var_factor):
        causes.append(
            f"inputs not standardised (variance {text.number(input_variance)} into "
            f"{view.layers[first_kernel]})"
        )
        steps.append(remedies.SELU_INPUTS)
    elif 0 in hits and not wrong:
        causes.append(
            f"inputs not standardised ({view.layers[outputs[0]]}, the first SELU "
            "layer, is already off)"
        )
        steps.append(remedies.SELU_INPUTS)
    # A layer that breaks the plain SELU stack.
    members = {i for pair in pairs for i in pair}
    breakers = [i for i in range(outputs[0] + 1, outputs[-1]) if i not in members]
    if breakers:
        causes.append(
            f"{text.describe_layers([view.layers[i] for i in breakers], view.layers)} "
            f"break{'s' if len(breakers) == 1 else ''} the plain SELU stack"
        )
        steps.append(remedies.SELU_PLAIN)
    elif not causes:
        start = flagged[0]
        if start > 0:
            causes.append(
                f"drift starts at {view.layers[outputs[start]]}: the weights have "
                "left the LeCun scale during training"
            )
        else:
            causes.append("the weights have left the LeCun scale during training")
        steps.append(remedies.SELU_DRIFT)
    summary = (
        f"SELU outputs drift from mean 0 / variance 1 (mean {text.number(worst_mean)}, "
        f"variance {text.number(worst_var)})"
    )
    return [
        view.finding(
            "not_self_normalizing", model.WARNING, [outputs[i] for i in flagged],
            hits.first, hits.last, summary, remedies.not_self_normalizing(steps),
            "activation_var",
            details={"causes": causes, "input_variance": input_variance,
                     "note": "likely cause: " + "; ".join(causes)},
        )
    ]
