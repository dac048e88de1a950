"""The distribution routes of the GradWatch tab (`metadata.DISTRIBUTIONS`).

Every `histogram_freq` steps the callback writes, per distribution, a float32
`[layers, width]` matrix: each layer's counts in the signed log-magnitude bins
of `metadata.histogram_bins()`, or its first `metadata.UNITS_SHOWN` units'
shares. Two routes serve them, read through TensorBoard's data provider:

- `distribution?run=R&name=N&layer=L[&max_columns=C]`: one layer over time,
  width x steps (the "colorful dimension" of a histogram, or units x steps),
  with the bins' labels, how many units the layer has recorded, and for
  `unit_activity` since when each unit has been dead;
- `distribution_step?run=R&name=N[&step=S]`: every layer's row at one
  recorded step (the latest by default), the small multiples down the depth.

docs/http_api.md documents every parameter and field.
"""

import collections
import threading

import numpy as np
import werkzeug
from tensorboard import errors
from tensorboard.backend import http_util

from . import heatmap_body, metadata
from .request_params import (
    DEFAULT_MAX_COLUMNS, MAX_COLUMNS_LIMIT, MAX_STEP, int_param, required, run_tag_filter,
)

# The routes and the query parameters each takes (plugin.ROUTES lists them).
ROUTES = {
    "/distribution": ("run", "name", "layer", "max_columns"),
    "/distribution_step": ("run", "name", "step"),
}

# Distribution series kept in memory: each is steps x layers x width floats.
_CACHE_ENTRIES = 8

Distribution = collections.namedtuple("Distribution", ["steps", "values", "layers", "width"])


def names_in(tags):
    """The distributions a run recorded, in `metadata.DISTRIBUTION_NAMES`
    order.

    Args:
        tags: The run's `{tag: time_series}` from the data provider's listing
            (or None).

    Example:

    >>> names_in({"gradwatch/distribution/unit_activity": None})
    ['unit_activity']
    """
    present = {metadata.parse_tag(tag) for tag in tags or {}}
    return [name for name in metadata.DISTRIBUTION_NAMES
            if (metadata.DISTRIBUTION, name) in present]


def labels(name):
    """A distribution's column labels: the bins' (`histogram_bins()`), or
    the unit indices `"0"`, `"1"`, ...

    Example:

    >>> labels("gradient_histogram")[12], labels("unit_activity")[:2]
    ('0', ['0', '1'])
    """
    if metadata.DISTRIBUTIONS[name].columns == "bins":
        return [b["label"] for b in metadata.histogram_bins()]
    return [str(unit) for unit in range(metadata.UNITS_SHOWN)]


def units_recorded(values):
    """How many leading columns of a units series hold a value at some step:
    the layer's units up to `UNITS_SHOWN` (0 where the series does not apply).

    Args:
        values: Float array `[steps, units]` of one layer.
    """
    finite = np.isfinite(values).any(axis=0) if len(values) else np.zeros(0, bool)
    return int(np.flatnonzero(finite)[-1]) + 1 if finite.any() else 0


def dead_since(steps, activity):
    """Per unit, the first step of the unbroken run of zero activity that
    reaches the last recorded step (a unit dead now, and since when), else
    None.

    Args:
        steps: Recorded steps, sorted (length T).
        activity: Float array `[T, units]` of one layer's `unit_activity`.

    Example:

    >>> dead_since(np.array([0, 4, 8]), np.array([[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    [4, 0]
    """
    if not len(steps):
        return [None] * activity.shape[1]
    dead = activity == 0  # NaN (no floor, no unit) is never dead
    # Rows from the end while the unit stays dead.
    alive_rows = ~dead[::-1]
    tail = np.where(alive_rows.any(axis=0), alive_rows.argmax(axis=0), len(steps))
    return [int(steps[len(steps) - n]) if n else None for n in tail.tolist()]


class DistributionRoutes:
    """Serves the distribution routes from a TensorBoard data provider.

    Args:
        listing: `listing(environ) -> (ctx, experiment, {run: {tag: series}})`,
            the plugin's listing of GradWatch tags.
        data_provider: TensorBoard's data provider.
        samples: How many steps of each series to read
            (`plugin.samples_per_series`).

    Example:

    >>> routes = DistributionRoutes(plugin._listing, context.data_provider, 20_000)
    >>> apps = routes.handlers()  # {"/distribution": wsgi_app, ...}
    """

    def __init__(self, listing, data_provider, samples):
        self._listing = listing
        self._data_provider = data_provider
        self._samples = samples
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()

    def handlers(self):
        """`{route: WSGI app}` for every route of `ROUTES`."""
        return {"/distribution": self._serve_layer, "/distribution_step": self._serve_step}

    def _series(self, environ, run, name):
        """The whole `Distribution` of (run, name); cached until it grows."""
        if name not in metadata.DISTRIBUTIONS:
            raise errors.InvalidArgumentError(
                f"Parameter 'name' must be one of {list(metadata.DISTRIBUTION_NAMES)}, "
                f"got {name[:100]!r}"
            )
        ctx, experiment, listing = self._listing(environ)
        tags = listing.get(run)
        if not tags:
            raise errors.NotFoundError(f"No GradWatch data for run {run!r}")
        tag = metadata.tag(metadata.DISTRIBUTION, name)
        if tag not in tags:
            raise errors.NotFoundError(
                f"Run {run!r} has no distribution {name!r}; it has {names_in(tags)}"
            )
        time_series = tags[tag]
        try:
            content = metadata.parse_plugin_content(time_series.plugin_content)
        except ValueError as e:
            raise errors.InvalidArgumentError(f"Run {run!r}, distribution {name!r}: {e}") from e
        key = (experiment, run, name)
        version = (time_series.max_step, time_series.max_wall_time)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                self._cache.move_to_end(key)
                return cached[1]
        try:
            result = self._data_provider.read_tensors(
                ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
                downsample=self._samples, run_tag_filter=run_tag_filter(run, [tag]),
            )
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(
                f"Run {run!r}, distribution {name!r}: the event file holds a damaged record ({e})"
            ) from e
        series = _distribution_of(result.get(run, {}).get(tag, []), content["layers"], content["width"])
        with self._lock:
            self._cache[key] = (version, series)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return series

    @werkzeug.wrappers.Request.application
    def _serve_layer(self, request):
        run = required(request, "run")
        name = required(request, "name")
        layer = required(request, "layer")
        max_columns = int_param(
            request, "max_columns", DEFAULT_MAX_COLUMNS, 1, MAX_COLUMNS_LIMIT
        )
        series = self._series(request.environ, run, name)
        if layer not in series.layers:
            raise errors.NotFoundError(f"Run {run!r} has no layer {layer!r}")
        values = series.values[:, series.layers.index(layer)]
        units = metadata.DISTRIBUTIONS[name].columns == "units"
        recorded = units_recorded(values) if units else None
        since = dead_since(series.steps, values) if name == "unit_activity" else None
        # Each column shown is a real recorded step: the last of those it stands for.
        steps, _, shown = heatmap_body.downsample(series.steps, values, max_columns, "signed")
        body = {
            "run": run,
            "name": name,
            "layer": layer,
            "columns": metadata.DISTRIBUTIONS[name].columns,
            "labels": labels(name),
            "total_steps": int(len(series.steps)),
            "steps": steps,
            "values": shown,
            "units_recorded": recorded,
            "capped": bool(units and recorded == metadata.UNITS_SHOWN),
            "dead_since": since,
        }
        return http_util.Respond(request, heatmap_body.to_json(body), "application/json")

    @werkzeug.wrappers.Request.application
    def _serve_step(self, request):
        run = required(request, "run")
        name = required(request, "name")
        step = int_param(request, "step", -1, 0, MAX_STEP)
        series = self._series(request.environ, run, name)
        if not len(series.steps):
            raise errors.NotFoundError(f"Run {run!r} has no recorded step of {name!r} yet")
        row = len(series.steps) - 1 if step == -1 else int(np.searchsorted(series.steps, step))
        if row >= len(series.steps) or (step != -1 and series.steps[row] != step):
            raise errors.NotFoundError(
                f"Run {run!r} recorded {name!r} at steps {series.steps[:20].tolist()}"
                f"{'...' if len(series.steps) > 20 else ''}, not at {step}"
            )
        body = {
            "run": run,
            "name": name,
            "step": int(series.steps[row]),
            "steps": series.steps,
            "layers": series.layers,
            "columns": metadata.DISTRIBUTIONS[name].columns,
            "labels": labels(name),
            "values": series.values[row],
        }
        return http_util.Respond(request, heatmap_body.to_json(body), "application/json")


def _distribution_of(data, layers, width):
    """A `Distribution` from the data provider's tensors; a step whose tensor
    does not hold `layers x width` numbers is left out (a damaged record loses
    its step only), and a step written twice keeps its later record."""
    size = len(layers) * width
    by_step = {}
    for datum in data:
        array = datum.numpy
        if isinstance(array, np.ndarray) and array.dtype.kind in "fiu" and array.size == size:
            by_step[datum.step] = array.reshape(len(layers), width)
    steps = np.array(sorted(by_step), dtype=np.int64)
    values = (np.stack([by_step[s] for s in steps.tolist()]).astype(np.float32, copy=False)
              if len(steps) else np.zeros((0, len(layers), width), np.float32))
    return Distribution(steps, values, list(layers), width)
