"""`RecentWindow`: the last recorded rows of a run, as a recording the rules
read while training."""

import collections

import numpy as np


class RecentWindow:
    """The last `maxlen` recorded rows, as a recording-like object.

    Memory stays `O(maxlen x metrics x layers)` however long training runs.

    Args:
        layers: Watched layer names in depth order.
        maxlen: How many recorded steps to keep.

    Example:

    >>> window = RecentWindow(["relu"], maxlen=8)
    >>> window.append(0, {"dead_fraction": [0.9]})
    >>> window.metric("dead_fraction").shape
    (1, 1)
    """

    def __init__(self, layers, maxlen=64):
        self.layers = list(layers)
        self._rows = collections.deque(maxlen=int(maxlen))
        self.init_audit = None
        self.init_audit_step = None  # the step the audit describes
        self.first_nonfinite = None

    def append(self, step, layer_metrics):
        """Adds one recorded step: `{metric: per-layer vector}`."""
        row = {
            name: np.asarray(vector, np.float32).reshape(-1).copy()
            for name, vector in layer_metrics.items()
        }
        self._rows.append((int(step), row))

    def __len__(self):
        return len(self._rows)

    @property
    def steps(self):
        return np.array([s for s, _ in self._rows], dtype=np.int64)

    @property
    def metrics(self):
        names = set()
        for _, row in self._rows:
            names.update(row)
        return sorted(names)

    def metric(self, name):
        if not any(name in row for _, row in self._rows):
            raise KeyError(name)
        out = np.full((len(self._rows), len(self.layers)), np.nan)
        for i, (_, row) in enumerate(self._rows):
            if name in row and row[name].shape == (len(self.layers),):
                out[i] = row[name]
        return out
