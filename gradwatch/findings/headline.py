"""The headline scalars: the few numbers per recorded step worth a place in
TensorBoard's Scalars dashboard (`gradwatch/headline/<name>`)."""

import math

import numpy as np

from .arrays import nanmax
from .chain import first_to_last


def headline(layer_metrics, chain=()):
    """The headline scalars of one recorded step.

    Args:
        layer_metrics: Dict of metric name to per-layer vector.
        chain: Indices of the main chain's layers (`chain.main_chain`):
            `gradient_var_ratio_first_to_last` is `chain.first_to_last`, the
            definition the findings use.

    Returns:
        Dict of scalar name to float (NaN where nothing applies).

    Example:

    >>> headline({"gradient_var": [1e-6, 1e-2], "dead_fraction": [0.1, 0.4],
    ...           "saturation_fraction": [0, 0], "activation_nonfinite": [0, 0],
    ...           "gradient_nonfinite": [0, 0]}, chain=[0, 1])["gradient_var_ratio_first_to_last"]
    0.0001
    """
    grad_var = np.asarray(layer_metrics["gradient_var"], np.float64)
    present = grad_var[np.isfinite(grad_var) & (grad_var > 0)]
    if present.size >= 2:
        steps = present[:-1] / present[1:]
        smallest, largest = float(steps.min()), float(steps.max())
    else:
        smallest = largest = math.nan
    nonfinite = np.nansum(layer_metrics["activation_nonfinite"]) + np.nansum(
        layer_metrics["gradient_nonfinite"]
    )
    return {
        "dead_fraction_max": nanmax(layer_metrics["dead_fraction"]),
        "saturation_fraction_max": nanmax(layer_metrics["saturation_fraction"]),
        "gradient_var_ratio_first_to_last": first_to_last(grad_var, list(chain)),
        "gradient_var_layer_ratio_min": smallest,
        "gradient_var_layer_ratio_max": largest,
        "nonfinite_count": float(nonfinite),
    }
