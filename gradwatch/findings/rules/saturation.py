"""Rule `saturation`: a layer's outputs sustained in the flat region of its
nonlinearity."""

import numpy as np

from .. import remedies
from ..sustained import sustained


def check(view, th):
    sat = view.get("saturation_fraction")
    with np.errstate(invalid="ignore"):
        condition = sat >= th.saturation_fraction
    # A sigmoid or softmax output feeding a cross-entropy loss passes p - y
    # back to its logits, saturated or not: a confident classifier is not
    # a saturated network.
    condition[:, view.loss_heads()] = False
    hits = sustained(condition, th.min_records)
    if not hits:
        return []
    latest = {layer: float(sat[hits.recent(layer)[1], layer]) for layer in hits.layers}
    return [view.share_finding("saturation", hits, latest,
                               "of outputs in the flat region of the nonlinearity",
                               remedies.SATURATION, "saturation_fraction")]
