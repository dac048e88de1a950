"""Sustained conditions: where a per-layer condition held on enough
consecutive recorded steps to count (`Thresholds.min_records`), not on one
batch. Every rule that needs persistence asks this module."""

import numpy as np


def runs(mask, min_length):
    """`(start, end)` rows (inclusive) of the runs of True in the 1-D `mask`
    that are at least `min_length` long.

    Example:

    >>> runs([0, 1, 1, 1, 0, 1], 2)
    [(1, 3)]
    """
    edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends) if b - a + 1 >= min_length]


class Sustained:
    """The layers where a condition was sustained, with their runs.

    Falsy when no layer qualifies.

    Attributes:
        runs: `{layer: [(start, end), ...]}`, layers in ascending order.
        first: The first row of any run.
        last: The last row of any run.

    Example:

    >>> hits = sustained(np.array([[1, 0], [1, 1], [1, 1]], bool), 2)
    >>> hits.layers, hits.first, hits.last, hits.recent(1)
    ([0, 1], 0, 2, (1, 2))
    """

    def __init__(self, runs_by_layer):
        self.runs = dict(sorted(runs_by_layer.items()))

    def __bool__(self):
        return bool(self.runs)

    def __contains__(self, layer):
        return layer in self.runs

    @property
    def layers(self):
        return list(self.runs)

    @property
    def first(self):
        return min(r[0][0] for r in self.runs.values())

    @property
    def last(self):
        return max(r[-1][1] for r in self.runs.values())

    def recent(self, layer):
        """`(start, end)` of the layer's last run."""
        return self.runs[layer][-1]

    def merged(self, other):
        """These layers and `other`'s (a `Sustained`); ours where both."""
        return Sustained({**other.runs, **self.runs})


def sustained(condition, min_length):
    """Where `condition` (`[rows, layers]` bool) held on at least
    `min_length` consecutive rows.

    Args:
        condition: A bool array `[rows, layers]`.
        min_length: The fewest consecutive rows that count.

    Returns:
        A `Sustained`.
    """
    condition = np.asarray(condition, bool)
    # Longest run of True ending at each row, for every layer at once; only
    # layers whose longest run is long enough are walked.
    length = np.zeros(condition.shape[1], np.int64)
    longest = np.zeros(condition.shape[1], np.int64)
    for row in condition:
        length = (length + 1) * row
        np.maximum(longest, length, out=longest)
    return Sustained({
        int(layer): runs(condition[:, layer], min_length)
        for layer in np.flatnonzero(longest >= min_length)
    })
