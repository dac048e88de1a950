"""Rules `vanishing_gradients` and `exploding_gradients`: the first-to-last
gradient variance ratio of the main chain (`..chain`) sustained far below or
above 1; and for exploding gradients also a corroborated gradient-norm spike,
or updates as large as the weights in most layers."""

import numpy as np

from .. import model, remedies, text
from ..chain import gradient_var_ratio
from ..sustained import runs


def check(view, th):
    names, ratio = gradient_var_ratio(view)
    chain = [view.index[n] for n in names]
    with np.errstate(divide="ignore", invalid="ignore"):
        if chain:
            first, last = chain[0], chain[-1]
            per_layer = ratio ** (1.0 / (last - first))
            vanishing = ratio <= th.vanishing_ratio
            exploding = ratio >= th.exploding_ratio
        else:
            per_layer = ratio
            vanishing = exploding = np.zeros(len(view.steps), bool)
    found = _vanishing(view, th, chain, ratio, per_layer, vanishing)
    found += _exploding(view, th, chain, ratio, per_layer, exploding)
    return found


def _median_over(values, span):
    values = values[span[0]:span[1] + 1]
    return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")


def _vanishing(view, th, chain, ratio, per_layer, vanishing):
    sustained = runs(vanishing, th.min_records)
    if not sustained:
        return []
    worst = _median_over(ratio, sustained[-1])
    step_factor = _median_over(per_layer, sustained[-1])
    summary = (
        f"gradient variance at {view.layers[chain[0]]} is {text.number(worst)} of "
        f"that at {view.layers[chain[-1]]} ({text.number(step_factor)}\u00d7 per layer)"
    )
    return [
        view.finding(
            "vanishing_gradients", model.WARNING, chain, sustained[0][0], sustained[-1][1],
            summary, remedies.VANISHING, "gradient_var",
            details={"ratio": worst, "per_layer": step_factor,
                     "from": view.layers[chain[-1]], "to": view.layers[chain[0]]},
        )
    ]


def _exploding(view, th, chain, ratio, per_layer, exploding):
    """Sustained growth, growth then NaN/Inf, a gradient-norm spike, or
    updates replacing the weights."""
    k = th.min_records
    act, grad = view.nonfinite()
    nonfinite_rows = np.flatnonzero((act | grad).any(axis=1))
    growth_runs = runs(exploding, k)
    diverged = False
    if nonfinite_rows.size:
        first_bad = int(nonfinite_rows[0])
        # Growth on one of the few recorded steps just before NaN/Inf.
        lead = max(0, first_bad - k)
        before = np.flatnonzero(exploding[lead: first_bad + 1]) + lead
        if before.size:
            diverged = True
            growth_runs = sorted(set(growth_runs) | {(int(before[0]), first_bad)})
    spikes = _spikes(view, th)
    # Updates as large as the weights in most layers at once: the weights
    # are replaced by their updates; whatever the gradients' shape, training
    # has diverged (a learning rate far too large).
    all_updates = view.get("update_ratio")
    kernels = np.isfinite(all_updates).any(axis=0)
    with np.errstate(invalid="ignore"):
        over = all_updates[:, kernels] >= th.update_ratio_diverged
    replaced = np.flatnonzero(2 * over.sum(axis=1) >= max(1, int(kernels.sum()))) if kernels.any() else []
    update = all_updates[:, chain]
    if growth_runs and not diverged and all(view.feeds_batch_norm(l) for l in chain):
        # BatchNorm makes the loss blind to the scale of the layer before it,
        # whose gradient then scales with 1/(its output's std): growth across
        # depth says nothing there. Only large updates or NaN/Inf do.
        if not (np.nan_to_num(update, nan=0.0) >= th.update_ratio_max).any():
            growth_runs = []
    if not growth_runs and not spikes and not len(replaced):
        return []
    rows, layers, parts = [], set(), []
    details = {}
    severity = model.INFO
    if growth_runs:
        rows += [growth_runs[0][0], growth_runs[-1][1]]
        layers.update(chain)
        worst = _median_over(ratio, growth_runs[-1])
        step_factor = _median_over(per_layer, growth_runs[-1])
        parts.append(
            f"gradient variance at {view.layers[chain[0]]} is {text.number(worst)}\u00d7 "
            f"that at {view.layers[chain[-1]]} ({text.number(step_factor)}\u00d7 per layer)"
        )
        details.update(ratio=worst, per_layer=step_factor)
        spans = np.zeros(len(view.steps), bool)
        for a, b in growth_runs:
            spans[a:b + 1] = True
        largest = update[spans]
        largest = float(np.nanmax(largest)) if np.isfinite(largest).any() else float("nan")
        details["update_ratio_max"] = largest
        if diverged:
            severity = model.WARNING
            details["note"] = f"NaN/Inf followed at step {view.step(int(nonfinite_rows[0]))}"
        elif np.isfinite(largest) and largest >= th.update_ratio_max:
            severity = model.WARNING
            parts.append(f"updates up to {text.number(largest)} of the weights")
        elif np.isfinite(largest):
            details["note"] = (
                f"contained: updates stay below {text.number(largest)} of the weights "
                "(clipping or an adaptive optimizer)"
            )
    if spikes:
        severity = model.WARNING
        spike_rows = [r for r, _, _ in spikes]
        rows += [min(spike_rows), max(spike_rows)]
        layers.update(l for _, l, _ in spikes)
        row, layer, factor = max(spikes, key=lambda s: s[2])
        parts.append(
            f"kernel gradient norm of {view.layers[layer]} jumped {text.number(factor)}\u00d7 "
            f"at step {view.step(row)}"
        )
        details["spike_factor"] = factor
    if len(replaced):
        severity = model.WARNING
        rows += [int(replaced[0]), int(replaced[-1])]
        worst_row = int(replaced[np.argmax(np.nanmax(all_updates[replaced][:, kernels], axis=1))])
        over_layers = np.flatnonzero(kernels)[over[worst_row]]
        layers.update(int(l) for l in over_layers)
        largest = float(np.nanmax(all_updates[worst_row]))
        parts.append(
            f"updates up to {text.number(largest)}\u00d7 the weights in {len(over_layers)} of "
            f"{int(kernels.sum())} layers"
        )
        details["update_ratio_max"] = largest
    return [
        view.finding(
            "exploding_gradients", severity, layers, min(rows), max(rows), ", ".join(parts),
            remedies.EXPLODING,
            "gradient_var" if growth_runs else "gradient_norm" if spikes else "update_ratio",
            details=details,
        )
    ]


def _spikes(view, th):
    """`(row, layer, factor)` where a kernel gradient norm jumped."""
    norm = view.get("gradient_norm")
    rows, layers = norm.shape
    out = []
    if rows <= th.min_records or not np.isfinite(norm).any():
        return out
    h = th.spike_history
    # history[r] = the (up to) h rows before row r, NaN-padded at the start.
    padded = np.concatenate([np.full((h, layers), np.nan), norm], axis=0)
    history = np.lib.stride_tricks.sliding_window_view(padded, h, axis=0)[:rows]
    ordered = np.sort(history, axis=-1)  # [rows, layers, h], NaN last
    count = np.isfinite(history).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0]
    with np.errstate(all="ignore"):
        base = 0.5 * (low + high)  # the median of the finite history
        factor = norm / base
        jumped = (count >= th.min_records) & (base > 0) & np.isfinite(factor) & (
            factor >= th.spike_factor
        )
    # What an explosion shows besides one jump (see `Thresholds.spike_factor`).
    update = np.nan_to_num(view.get("update_ratio"), nan=0.0)
    act, grad = view.nonfinite()
    bad = (act | grad).any(axis=1)
    with np.errstate(all="ignore"):
        lasting = np.zeros_like(jumped)
        lasting[:-1] = jumped[:-1] & (norm[1:] >= th.spike_factor * base[:-1])
    for row, layer in zip(*np.nonzero(jumped)):
        corroborated = (
            lasting[row, layer]
            or jumped[row].sum() >= 2
            or update[row, layer] >= th.update_ratio_max
            or bad[row:row + th.min_records + 1].any()
        )
        if corroborated:
            out.append((int(row), int(layer), float(factor[row, layer])))
    return out
