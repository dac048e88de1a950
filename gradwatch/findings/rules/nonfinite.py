"""Rule `nonfinite`: NaN/Inf in activations or gradients, named by the layer
and step where it started."""

import numpy as np

from .. import model, remedies, text


def check(view, th):
    act, grad = view.nonfinite()
    bad = act | grad
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return _recorded(view)
    first, last = int(rows[0]), int(rows[-1])
    act_layers = np.flatnonzero(act[first])
    if act_layers.size:
        origin, kind = int(act_layers[0]), "activations"
    else:
        # Backprop runs from the loss down: the origin is the deepest layer.
        origin, kind = int(np.flatnonzero(grad[first])[-1]), "gradients"
    affected = [int(i) for i in np.flatnonzero(bad[first])]
    summary = f"NaN/Inf in the {kind} of {view.layers[origin]}"
    if len(affected) > 1:
        summary += f" and {len(affected) - 1} more layer{'s' if len(affected) > 2 else ''}"
    return [
        view.finding(
            "nonfinite", model.WARNING, affected, first, last, summary, remedies.NONFINITE,
            "activation_nonfinite" if kind == "activations" else "gradient_nonfinite",
            details={"origin": view.layers[origin], "kind": kind[:-1]},
        )
    ]


def _recorded(view):
    """From `first_nonfinite` alone, when no row at hand shows the NaN/Inf."""
    first = view.first_nonfinite
    if not isinstance(first, dict) or first.get("layer") not in view.index:
        return []
    try:
        step = int(first["step"])
    except (KeyError, TypeError, ValueError):
        return []
    kind = "gradient" if first.get("kind") == "gradient" else "activation"
    finding = model.Finding(
        rule="nonfinite", severity=model.WARNING, layers=[first["layer"]],
        first_step=step, last_step=step, message="", remedy=remedies.NONFINITE,
        metric=f"{kind}_nonfinite", ongoing=False,
        summary=f"NaN/Inf in the {kind}s of {first['layer']}",
        details={"origin": first["layer"], "kind": kind},
    )
    finding.message = text.render_message(finding, view.layers)
    return [finding]
