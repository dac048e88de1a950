"""What the rules read from a recording, computed once.

The rules read only what any *recording-like* object offers:

- `layers`: watched layer names in depth order;
- `steps`: 1-D int array of recorded steps;
- `metrics` and `metric(name)` -> float array `[steps, layers]`;
- optionally `init_audit` (list of dicts), `init_audit_step` and
  `first_nonfinite`.

`gradwatch.load(...)` returns one, and so does the callback's `RecentWindow`.
"""

import numpy as np

from . import model, text

# Output nonlinearities whose gradient, paired with a cross-entropy loss, is
# p - y at the logits: it does not vanish where they saturate.
_LOSS_PAIRED = ("sigmoid", "softmax")


class View:
    """A recording as the rules read it: `[steps, layers]` arrays, NaN where
    absent, and the init audit by layer.

    Args:
        recording: A recording-like object (see the module docstring).

    Example:

    >>> view = View(gradwatch.load("runs/exp1"))
    >>> view.get("gradient_var").shape  # (steps, layers)
    """

    def __init__(self, recording):
        self.layers = [str(n) for n in recording.layers]
        self.index = {n: i for i, n in enumerate(self.layers)}
        self.steps = np.asarray(recording.steps, dtype=np.int64).reshape(-1)
        self._recording = recording
        self.cache = {}  # what is computed once per view (metrics, the main chain)
        self.audit = [e for e in (getattr(recording, "init_audit", None) or []) if isinstance(e, dict)]
        self._audit_by_layer = {}
        for entry in self.audit:
            self._audit_by_layer.setdefault(entry.get("layer"), entry)
        # The step the audit describes: the first recorded one unless told.
        audit_step = getattr(recording, "init_audit_step", None)
        self.audit_step = int(audit_step) if audit_step is not None else (
            int(self.steps[0]) if len(self.steps) else 0
        )
        self.first_nonfinite = getattr(recording, "first_nonfinite", None)
        present = getattr(recording, "metrics", None)
        self._present = set(present) if present is not None else None

    def get(self, name):
        """`[steps, layers]` float array, all NaN where absent."""
        if name not in self.cache:
            values = None
            if self._present is None or name in self._present:
                try:
                    values = np.asarray(self._recording.metric(name), np.float64)
                except KeyError:
                    values = None
            shape = (len(self.steps), len(self.layers))
            if values is None or values.shape != shape:
                values = np.full(shape, np.nan)
            self.cache[name] = values
        return self.cache[name]

    def applies(self, name):
        """Per layer: whether `name` was ever recorded finite for it."""
        key = ("applies", name)
        if key not in self.cache:
            self.cache[key] = np.isfinite(self.get(name)).any(axis=0)
        return self.cache[key]

    def nonfinite(self):
        """`[steps, layers]` bool: NaN/Inf in the activations, the gradients."""
        counts = [np.nan_to_num(self.get(f"{kind}_nonfinite"), nan=0.0) > 0
                  for kind in ("activation", "gradient")]
        return counts[0], counts[1]

    def step(self, row):
        return int(self.steps[row])

    def audit_of(self, layer):
        """The init audit's entry of the layer named `layer`, or None."""
        return self._audit_by_layer.get(layer)

    def loss_heads(self):
        """Indices of layers whose outputs feed a cross-entropy loss through
        a sigmoid or softmax (from the init audit)."""
        return sorted({
            self.index[e["loss_head"]] for e in self.audit
            if e.get("loss_head") in self.index and e.get("activation") in _LOSS_PAIRED
        })

    def feeds_batch_norm(self, layer):
        """Whether layer `layer` (an index) feeds a BatchNormalization: from
        the model's graph (the audit), else whether the next layer is one."""
        audit = self.audit_of(self.layers[layer])
        if audit and audit.get("feeds_batch_norm") is not None:
            return bool(audit["feeds_batch_norm"])
        nxt = layer + 1
        return nxt < len(self.layers) and bool(
            self.applies("bn_skew")[nxt] or self.applies("bn_batch_var")[nxt]
        )

    def batch_norm_horizon(self):
        """Per layer: the optimizer steps its BatchNorm moving averages need
        to forget their start, 1/(1 - momentum); 0 where unknown or where
        they never move (momentum 1)."""
        horizon = np.zeros(len(self.layers))
        for entry in self.audit:
            if entry.get("layer") not in self.index:
                continue
            try:
                momentum = float(entry.get("batch_norm_momentum"))
            except (TypeError, ValueError):
                continue
            if 0.0 <= momentum < 1.0:
                horizon[self.index[entry["layer"]]] = 1.0 / (1.0 - momentum)
        return horizon

    def finding(self, rule, severity, layer_ids, first_row, last_row, summary,
                remedy, metric, group="", details=None, ongoing=None):
        """A `Finding` over layers `layer_ids` (indices) and recorded rows
        `first_row` to `last_row`, its message rendered; ongoing (unless
        told) when it held at the last recorded row."""
        if ongoing is None:
            ongoing = last_row == len(self.steps) - 1
        finding = model.Finding(
            rule=rule,
            severity=severity,
            layers=[self.layers[i] for i in sorted(set(layer_ids))],
            first_step=self.step(first_row),
            last_step=self.step(last_row),
            message="",
            remedy=remedy,
            metric=metric,
            ongoing=bool(ongoing),
            summary=summary,
            group=group,
            details=details or {},
        )
        finding.message = text.render_message(finding, self.layers)
        return finding

    def share_finding(self, rule, hits, shares, what, remedy, metric):
        """A warning over the layers of `hits` (a `Sustained`) whose
        `shares` (`{layer: fraction}`, at each one's last sustained row)
        are `what`: `"40–90% of units dead"`."""
        return self.finding(
            rule, model.WARNING, hits.layers, hits.first, hits.last,
            f"{text.percent(shares.values())} {what}", remedy, metric,
            details={"fractions": {self.layers[l]: v for l, v in shares.items()}},
        )
