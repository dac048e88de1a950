"""Rule `bn_skew`: BatchNormalization batch statistics far from its moving
statistics (a train/inference skew), told apart from moving averages still
catching up."""

import math

import numpy as np

from .. import model, remedies, text
from ..arrays import nanmax
from ..sustained import Sustained, sustained


def check(view, th):
    skew = view.get("bn_skew")
    batch_var = view.get("bn_batch_var")
    moving_var = view.get("bn_moving_var")
    with np.errstate(divide="ignore", invalid="ignore"):
        var_gap = np.abs(np.log(moving_var / batch_var))
        # One score per cell: >= 1 where either gap crosses its threshold.
        score = np.fmax(skew / th.bn_skew_max, var_gap / math.log(th.bn_var_ratio_max))
        condition = score >= 1.0
    # In its moving averages' horizon a layer's gap is expected (they start
    # at mean 0, variance 1): only a gap that grows there counts.
    warm = view.steps[:, None] < view.batch_norm_horizon()[None, :]
    settled = sustained(condition & ~warm, th.min_records)
    young = sustained(condition & warm, 2 * th.min_records)
    growing = [
        layer for layer in young.layers
        if layer not in settled and _growing(_span(score, young, layer), th)
    ]
    hits = settled.merged(Sustained({l: young.runs[l] for l in growing}))
    if not hits:
        return []
    # Moving averages that lag behind (warm-up, a momentum close to 1) close
    # their gap geometrically: the gap in the statistics' own units shrinks
    # record after record. A gap from noisy or shifting batches does not.
    with np.errstate(invalid="ignore"):
        gaps_in_units = {
            "mean": skew * np.sqrt(np.abs(moving_var)),  # |batch - moving mean|
            "var": np.abs(moving_var - batch_var),
        }
        triggered = {
            "mean": skew >= th.bn_skew_max,
            "var": var_gap >= math.log(th.bn_var_ratio_max),
        }
    converging = []
    for layer in hits.layers:
        a, b = hits.recent(layer)
        if layer in growing:
            converging.append(False)
        elif b - a + 1 < 2 * th.min_records:
            converging.append(True)  # too young to tell a lag from a gap
        else:
            kinds = [k for k in ("mean", "var") if triggered[k][a:b + 1, layer].any()]
            converging.append(all(
                _shrinking(_span(gaps_in_units[k], hits, layer), th) for k in kinds
            ))
    ends = [(hits.recent(l)[1], l) for l in hits.layers]
    worst_skew = nanmax(skew[r, l] for r, l in ends)
    worst_ratio = nanmax(math.exp(var_gap[r, l]) for r, l in ends if np.isfinite(var_gap[r, l]))
    gaps = []
    if np.isfinite(worst_skew) and worst_skew >= th.bn_skew_max:
        gaps.append(f"mean gap {text.number(worst_skew)} moving std")
    if np.isfinite(worst_ratio) and worst_ratio >= th.bn_var_ratio_max:
        gaps.append(f"variance ratio {text.number(worst_ratio)}\u00d7")
    if not gaps:  # The gap closed at the run's end: say how far it got.
        gaps.append(
            f"mean gap {text.number(worst_skew)} moving std, "
            f"variance ratio {text.number(worst_ratio)}\u00d7"
        )
    summary = "batch statistics far from the moving statistics (" + ", ".join(gaps) + ")"
    details = {"skew": float(worst_skew), "var_ratio": float(worst_ratio)}
    if growing and not all(converging):
        details["note"] = "growing within the moving averages' horizon"
    if all(converging):
        severity, remedy = model.INFO, remedies.BN_CONVERGING
        details["note"] = "shrinking: the moving statistics are still converging"
    else:
        severity, remedy = model.WARNING, remedies.BN_SKEW
    return [
        view.finding("bn_skew", severity, hits.layers, hits.first, hits.last, summary,
                     remedy, "bn_skew", details=details)
    ]


def _span(values, hits, layer):
    """`values` of `layer` over its last sustained run."""
    a, b = hits.recent(layer)
    return values[a:b + 1, layer]


def _growing(score, th):
    """Whether a gap grew by `bn_growth_factor` (medians of the first and
    last `min_records` records)."""
    score = score[np.isfinite(score)]
    k = th.min_records
    if score.size < 2 * k:
        return False
    return bool(np.median(score[-k:]) >= th.bn_growth_factor * np.median(score[:k]))


def _shrinking(gap, th):
    """Whether a gap shrank by `bn_converging_drop` (medians of the first and
    last `min_records` records) and fell on at least 3 of 4 records."""
    gap = gap[np.isfinite(gap)]
    if gap.size < 2:
        return False
    k = th.min_records
    head, tail = np.median(gap[:k]), np.median(gap[-k:])
    falling = np.mean(np.diff(gap) < 0)
    return bool(tail <= (1.0 - th.bn_converging_drop) * head and falling >= 0.75)
