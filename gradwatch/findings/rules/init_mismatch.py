"""Rule `init_mismatch`: kernels whose variance is off what their
activation's init scheme gives (from the init audit), grouped by activation,
scheme and direction."""

import collections
import math

import numpy as np

from .. import model, remedies, text


def check(view, th):
    groups = collections.OrderedDict()
    bound = math.log(th.init_ratio)
    for entry in view.audit:
        layer = entry.get("layer")
        activation = entry.get("activation")
        scheme = entry.get("recommended")
        try:
            ratio = float(entry.get("ratio"))
        except (TypeError, ValueError):
            continue
        if (
            layer not in view.index
            or activation in (None, "unknown")
            or scheme not in remedies.INIT_SCHEMES
            or not np.isfinite(ratio)
            or ratio <= 0
            or abs(math.log(ratio)) <= bound
        ):
            continue
        if view.feeds_batch_norm(view.index[layer]):
            continue  # BatchNorm rescales whatever the kernel gives.
        direction = "high" if ratio > 1 else "low"
        groups.setdefault((activation, scheme, direction), []).append(
            (view.index[layer], ratio)
        )
    found = []
    for (activation, scheme, direction), members in groups.items():
        name, formula, _ = remedies.INIT_SCHEMES[scheme]
        ratios = [r for _, r in members]
        worst = max(ratios, key=lambda r: abs(math.log(r)))
        severity = model.WARNING if abs(math.log(worst)) >= math.log(th.init_warning_ratio) else model.INFO
        summary = (
            f"{activation} kernels with {text.number_range(ratios)}\u00d7 the variance of "
            f"{name} init ({formula}), which {activation} calls for"
        )
        finding = view.finding(
            "init_mismatch", severity, [l for l, _ in members], 0, 0, summary,
            remedies.init_mismatch(scheme, activation), "activation_var",
            group=f"{activation}/{scheme}/{direction}",
            details={"activation": activation, "recommended": scheme,
                     "ratios": {view.layers[l]: r for l, r in members}},
            ongoing=False,
        )
        finding.first_step = finding.last_step = view.audit_step
        found.append(finding)
    return found
