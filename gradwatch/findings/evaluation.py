"""`evaluate`: every rule applied to a recording."""

from . import model, text
from .chain import main_chain
from .rules import CHECKS
from .view import View


class Findings(list):
    """The findings of one evaluation (a list of `Finding`, warnings
    first), and the main chain (`gradwatch.findings.chain`) they compared
    gradients across.

    Attributes:
        chain: The main chain's layer names in depth order; empty if it has
            fewer than 2 layers.
    """

    def __init__(self, findings=(), chain=()):
        super().__init__(findings)
        self.chain = list(chain)


def evaluate(recording, thresholds=None):
    """Applies every rule to a recording.

    Args:
        recording: A `gradwatch.Recording` or any recording-like object (see
            `gradwatch.findings.view`), e.g. the callback's `RecentWindow`.
        thresholds: A `Thresholds`; defaults to `Thresholds()`.

    Returns:
        `Findings`: a list of `Finding`, warnings first, then in `RULES`
        order; its `chain` names the main chain's layers.

    Example:

    >>> found = evaluate(gradwatch.load("runs/exp1"))
    >>> [f.rule for f in found], found.chain
    """
    if thresholds is None:
        thresholds = model.Thresholds()
    if not isinstance(thresholds, model.Thresholds):
        raise TypeError(
            f"thresholds must be a gradwatch.findings.Thresholds, got {type(thresholds).__name__}"
        )
    view = View(recording)
    if len(view.steps) == 0 or not view.layers:
        return Findings()
    found = []
    for check in CHECKS:
        found.extend(check(view, thresholds))
    _relate(found, view)
    chain = [view.layers[i] for i in main_chain(view)]
    return Findings(model.sort_findings(found), chain)


def _relate(found, view):
    """Notes where one finding explains another."""
    by_rule = {f.rule: f for f in found}
    vanishing, dying = by_rule.get("vanishing_gradients"), by_rule.get("dying_units")
    if vanishing and dying and (
        dying.first_step <= vanishing.last_step and vanishing.first_step <= dying.last_step
    ):
        vanishing.details["note"] = "dead units block the gradient (see dying_units)"
        vanishing.message = text.render_message(vanishing, view.layers)
