"""Rule `dying_units`: units dead across the epoch, or on each of several
consecutive batches."""

import numpy as np

from .. import remedies
from ..arrays import nanmax
from ..sustained import sustained


def _units(view):
    """Per layer: its unit count, from dead_units / dead_fraction (NaN if unknown)."""
    dead = view.get("dead_units")
    fraction = view.get("dead_fraction")
    with np.errstate(divide="ignore", invalid="ignore"):
        units = np.where((fraction > 0) & (dead > 0), dead / fraction, np.nan)
    out = np.full(len(view.layers), np.nan)
    known = np.isfinite(units).any(axis=0)
    if known.any():
        out[known] = np.round(np.nanmedian(units[:, known], axis=0))
    return out


def check(view, th):
    fraction = view.get("dead_fraction")
    window = view.get("dead_units_window") / _units(view)[None, :]
    with np.errstate(invalid="ignore"):
        condition = (window >= th.dead_fraction) | (fraction >= th.dead_fraction_batch)
    hits = sustained(condition, th.min_records)
    if not hits:
        return []
    latest = {}
    for layer in hits.layers:
        row = hits.recent(layer)[1]
        latest[layer] = nanmax([fraction[row, layer], window[row, layer]])
    return [view.share_finding("dying_units", hits, latest, "of units dead",
                               remedies.DYING_UNITS, "dead_fraction")]
