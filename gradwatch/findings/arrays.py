"""NaN-aware reductions shared by the rules, the headline scalars and the
demo's table."""

import math

import numpy as np


def nanmax(values):
    """The largest finite value of `values` (any array-like or iterable of
    numbers), NaN if there is none.

    Example:

    >>> nanmax([1.0, float("nan"), 3.0]), nanmax([float("nan")])
    (3.0, nan)
    """
    if not isinstance(values, np.ndarray):
        values = list(values)
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan
