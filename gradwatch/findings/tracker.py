"""`FindingTracker`: the findings of successive evaluations folded into one
history over a whole `fit`."""

import collections
import dataclasses

from . import model, text


class FindingTracker:
    """Folds the findings of successive evaluations into one history.

    A finding is identified by its `key` (`rule`, `group`). Its first step is
    the earliest seen, its layers the union, its severity the worst.

    Args:
        layer_order: Layer names in depth order (for messages).

    Example:

    >>> tracker = FindingTracker(["relu"])
    >>> events = tracker.update(evaluate(window))  # [("new", finding), ...]
    """

    def __init__(self, layer_order=()):
        self.layer_order = list(layer_order)
        self._seen = collections.OrderedDict()

    def update(self, findings):
        """Merges one evaluation.

        Returns:
            `[(status, finding)]` for findings that are `"new"` or
            `"changed"` (more layers, or a worse severity).
        """
        events = []
        current = {f.key for f in findings}
        order = {n: i for i, n in enumerate(self.layer_order)}
        for f in findings:
            old = self._seen.get(f.key)
            if old is None:
                merged = dataclasses.replace(f, layers=list(f.layers), details=dict(f.details))
                self._seen[f.key] = merged
                events.append(("new", merged))
                continue
            new_layers = [n for n in f.layers if n not in old.layers]
            worse = old.severity != model.WARNING and f.severity == model.WARNING
            old.layers = sorted(set(old.layers) | set(f.layers), key=lambda n: order.get(n, len(order)))
            old.first_step = min(old.first_step, f.first_step)
            old.last_step = max(old.last_step, f.last_step)
            old.ongoing = f.ongoing
            old.summary = f.summary
            old.remedy = f.remedy
            old.metric = f.metric
            old.details = dict(f.details)
            if worse:
                old.severity = model.WARNING
            old.message = text.render_message(old, self.layer_order)
            if new_layers or worse:
                events.append(("changed", old))
        for key, old in self._seen.items():
            if key not in current and old.ongoing and old.rule != "init_mismatch":
                old.ongoing = False
                old.message = text.render_message(old, self.layer_order)
        return events

    def findings(self):
        """Every finding seen so far, warnings first."""
        return model.sort_findings(list(self._seen.values()))
