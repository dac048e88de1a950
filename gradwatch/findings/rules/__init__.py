"""The rules, one module each. Each module's `check(view, thresholds)`
returns its findings (a list of `Finding`) on a `View` of a recording."""

from . import bn_skew, dying_units, gradients, init_mismatch, nonfinite, saturation, self_normalizing

# The order they run in (`evaluate` sorts what they find).
CHECKS = (
    nonfinite.check,
    gradients.check,
    saturation.check,
    dying_units.check,
    self_normalizing.check,
    bn_skew.check,
    init_mismatch.check,
)
