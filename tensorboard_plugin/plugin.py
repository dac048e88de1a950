"""The GradWatch tab: serves layer x step heatmaps and depth profiles.

Reads only through `context.data_provider` (`list_tensors` / `read_tensors`),
so it works with TensorBoard's default Rust data server and with the Python
multiplexer alike. Imports no TensorFlow.

Routes (relative to the plugin's folder; `ROUTES` lists each with its
parameters, and docs/http_api.md documents every parameter, field and error):
- `runs`: every run with GradWatch data, its metrics and layers, and the
  metric list (names, labels, colour scales) the page shows.
- `heatmap?run=R&metric=M[&max_columns=N][&start_step=A&end_step=B]
  [&format=binary]`: the recorded steps in [A, B] x layers, downsampled on the
  server into at most N columns. Fractions and counts keep the worst (max)
  value of each column, so a short-lived pathology never averages away; other
  metrics keep the real value at the column's last step. The page zooms by
  asking for the visible range at one column per pixel, in the binary format
  (`quantise`).
- `profile?run=R&step=S[&metrics=M1,M2]`: every metric (or the ones named)
  across layers at one recorded step. The page asks for the two it draws: on
  a long run each series not yet in memory takes about half a second to read.
- `distribution?run=R&name=N&layer=L` and `distribution_step?run=R&name=N`:
  the recorded distributions (histograms, per-unit shares), by
  `distributions.DistributionRoutes`.
- `findings?run=R`: the latest findings document the callback wrote for the
  run (`gradwatch.findings`): named problems with their layers, steps, metric
  and remedy; an empty list (`available: false`) if it wrote none yet.
- `static/<file>`: the page.

Each series is read from TensorBoard with as many steps as it keeps
(`--samples_per_plugin gradwatch=N`, see `samples_per_series`).
"""

import collections
import json
import mimetypes
import os
import threading

import numpy as np
import werkzeug
from werkzeug.utils import safe_join
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util, json_util
from tensorboard.plugins import base_plugin

from . import distributions, findings_document, metadata

_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
DEFAULT_MAX_COLUMNS = 1000
MAX_COLUMNS_LIMIT = 20_000
MAX_STEP = 2**62
HEATMAP_FORMATS = ("json", "binary")
# What `read_tensors` is asked for when `--samples_per_plugin gradwatch=0`
# (TensorBoard's "keep every step"): it returns nothing for 0.
ALL_SAMPLES = 2**31 - 1
# The series cache's budget: every metric of a run at 20,000 steps x 500
# layers (19 x 38 MiB), so that the depth profile of every metric at any step
# answers from memory.
_CACHE_BYTES = 768 * 2**20

# Every route and the query parameters it takes: docs/http_api.md documents
# each (a test keeps them equal), and any other parameter is refused.
ROUTES = {
    "/runs": (),
    "/heatmap": ("run", "metric", "max_columns", "start_step", "end_step", "format"),
    "/profile": ("run", "step", "metrics"),
    "/findings": ("run",),
    **distributions.ROUTES,
    "/static/*": (),
}

Series = collections.namedtuple("Series", ["steps", "values", "layers"])


class GradWatchPlugin(base_plugin.TBPlugin):
    """TensorBoard plugin for GradWatch summaries."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        self._samples = samples_per_series(context.sampling_hints)
        self._cache = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._series_locks = {}
        self._warmed = set()
        self._distributions = distributions.DistributionRoutes(
            self._listing, context.data_provider, self._samples
        )

    def get_plugin_apps(self):
        handlers = {
            "/runs": self._serve_runs,
            "/heatmap": self._serve_heatmap,
            "/profile": self._serve_profile,
            "/findings": self._serve_findings,
            **self._distributions.handlers(),
            "/static/*": self._serve_static,
        }
        return {route: _checked(route, handlers[route]) for route in ROUTES}

    def is_active(self):
        return False  # Activity comes from `data_plugin_names`.

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path="/static/index.js", tab_name="GradWatch"
        )

    # -- reading ------------------------------------------------------------

    def _listing(self, environ):
        ctx = plugin_util.context(environ)
        experiment = plugin_util.experiment_id(environ)
        listing = self._data_provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME
        )
        return ctx, experiment, listing

    def _run_tags(self, listing, run):
        """`{metric: time_series}` of one run; NotFoundError if unknown."""
        tags = listing.get(run)
        metrics = {}
        for tag, series in (tags or {}).items():
            metric = metadata.metric_from_tag(tag)  # either tag scheme
            if metric is not None:
                metrics[metric] = _latest(metrics.get(metric), series)
        if not metrics:
            raise errors.NotFoundError(f"No GradWatch data for run {run!r}")
        return metrics

    def _read_series(self, ctx, experiment, run, metric, time_series):
        """Steps x layers of one (run, metric), cached until it grows."""
        try:
            layers = metadata.parse_plugin_content(time_series.plugin_content)[
                "layers"
            ]
        except ValueError as e:
            raise errors.InvalidArgumentError(
                f"Run {run!r}, metric {metric!r}: {e}"
            ) from e
        key = (experiment, run, metric)
        version = (time_series.max_step, time_series.max_wall_time)
        # One reader per series: a second request for it waits for the first
        # read rather than repeating it.
        with self._series_lock(key):
            with self._cache_lock:
                cached = self._cache.get(key)
                if cached is not None and cached[0] == version:
                    self._cache.move_to_end(key)
                    return cached[1]
            data = self._read_tensors(
                ctx, experiment, run, metadata.metric_tag(metric), f"metric {metric!r}"
            )
            series = _series_of(data, layers)
            self._remember(key, version, series)
            return series

    def _series_lock(self, key):
        with self._cache_lock:
            return self._series_locks.setdefault(key, threading.Lock())

    def _warm(self, ctx, experiment, run, metrics):
        """Reads a run's other metrics into the cache in the background, so
        that the depth profile (every metric at one step) and switching
        metric answer from memory: on a long run each series takes about a
        second to read, most of it TensorBoard's decoding of the tensors.

        Once per run: while a run grows, the page's refresh re-reads only
        the series it shows, not all of them every few seconds."""
        key = (experiment, run)
        with self._cache_lock:
            if key in self._warmed:
                return
            self._warmed.add(key)

        def read_all():
            for metric in sorted(metrics, key=metadata.metric_order):
                try:
                    self._read_series(ctx, experiment, run, metric, metrics[metric])
                except errors.PublicError:
                    pass  # Its own request will report it.

        threading.Thread(target=read_all, name="gradwatch-warm", daemon=True).start()

    def _read_tensors(self, ctx, experiment, run, tag, what):
        """Every datum of one (run, tag); InvalidArgumentError if unreadable.

        The data provider decodes every tensor it returns and raises on one
        whose dtype or shape does not fit its bytes: a damaged record, which
        TensorBoard's default data server passes on (it checksums only records
        that fail to parse). That is the file's fault, not a server error.
        """
        try:
            result = self._data_provider.read_tensors(
                ctx,
                experiment_id=experiment,
                plugin_name=metadata.PLUGIN_NAME,
                downsample=self._samples,
                run_tag_filter=_run_tag_filter(run, metadata.tags_for_reading(tag)),
            )
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(
                f"Run {run!r}, {what}: the event file holds a damaged record ({e})"
            ) from e
        by_tag = result.get(run, {})
        return [d for t in metadata.tags_for_reading(tag) for d in by_tag.get(t, [])]

    def _remember(self, key, version, value):
        """Caches `value` for `key` until the series' `version` changes; the
        least recently used go once the cache holds `_CACHE_BYTES`."""
        with self._cache_lock:
            self._cache[key] = (version, value)
            self._cache.move_to_end(key)
            while len(self._cache) > 1 and _cache_bytes(self._cache) > _CACHE_BYTES:
                self._cache.popitem(last=False)

    # -- routes -------------------------------------------------------------

    @werkzeug.wrappers.Request.application
    def _serve_runs(self, request):
        _, _, listing = self._listing(request.environ)
        runs = []
        for run in sorted(listing):
            try:
                metrics = self._run_tags(listing, run)
            except errors.NotFoundError:
                continue
            layers = []
            for series in metrics.values():
                try:
                    content = metadata.parse_plugin_content(
                        series.plugin_content
                    )
                except ValueError:
                    continue
                layers = content["layers"]
                break
            runs.append(
                {
                    "run": run,
                    "layers": layers,
                    "metrics": sorted(metrics, key=metadata.metric_order),
                    "last_step": max(s.max_step for s in metrics.values()),
                    "distributions": distributions.names_in(listing[run]),
                }
            )
        body = {
            "runs": runs,
            # The page's only list of metrics: its menu order and labels.
            "metric_names": list(metadata.METRIC_NAMES),
            "default_metric": metadata.DEFAULT_METRIC,
            "metric_info": {
                name: info.to_json() for name, info in metadata.METRICS.items()
            },
        }
        return http_util.Respond(request, body, "application/json")

    @werkzeug.wrappers.Request.application
    def _serve_heatmap(self, request):
        run = _required(request, "run")
        metric = _required(request, "metric")
        max_columns = _int_param(
            request, "max_columns", DEFAULT_MAX_COLUMNS, 1, MAX_COLUMNS_LIMIT
        )
        start_step = _int_param(request, "start_step", 0, 0, MAX_STEP)
        end_step = _int_param(request, "end_step", MAX_STEP, 0, MAX_STEP)
        if start_step > end_step:
            raise errors.InvalidArgumentError(
                f"Parameter 'start_step' ({start_step}) must not exceed "
                f"'end_step' ({end_step})"
            )
        encoding = request.args.get("format", "json")
        if encoding not in HEATMAP_FORMATS:
            raise errors.InvalidArgumentError(
                f"Parameter 'format' must be one of {list(HEATMAP_FORMATS)}, "
                f"got {encoding[:100]!r}"
            )
        ctx, experiment, listing = self._listing(request.environ)
        metrics = self._run_tags(listing, run)
        if metric not in metrics:
            raise errors.NotFoundError(
                f"Run {run!r} has no metric {metric!r}; it has "
                f"{sorted(metrics, key=metadata.metric_order)}"
            )
        series = self._read_series(ctx, experiment, run, metric, metrics[metric])
        scale = metadata.METRICS[metric].scale if metric in metadata.METRICS else "signed"
        # The recorded steps in [start_step, end_step].
        lo = np.searchsorted(series.steps, start_step, side="left")
        hi = np.searchsorted(series.steps, end_step, side="right")
        steps, ranges, values = downsample(
            series.steps[lo:hi], series.values[lo:hi], max_columns, scale
        )
        header = {
            "run": run,
            "metric": metric,
            "layers": series.layers,
            "total_steps": int(len(series.steps)),
            "first_step": int(series.steps[0]) if len(series.steps) else None,
            "last_step": int(series.steps[-1]) if len(series.steps) else None,
            "range_steps": int(hi - lo),
            "step_ranges": ranges,
        }
        self._warm(ctx, experiment, run, metrics)
        if encoding == "binary":
            return _respond_binary(request, header, values, scale)
        body = dict(header, steps=steps, values=values)
        return http_util.Respond(request, to_json(body), "application/json")

    @werkzeug.wrappers.Request.application
    def _serve_profile(self, request):
        run = _required(request, "run")
        step = _int_param(request, "step", None, 0, MAX_STEP)
        wanted = request.args.get("metrics")
        ctx, experiment, listing = self._listing(request.environ)
        metrics = self._run_tags(listing, run)
        if wanted is not None:
            metrics = _chosen_metrics(run, metrics, wanted)
        layers, per_metric = None, {}
        for metric in sorted(metrics, key=metadata.metric_order):
            series = self._read_series(
                ctx, experiment, run, metric, metrics[metric]
            )
            row = np.searchsorted(series.steps, step)
            if row < len(series.steps) and series.steps[row] == step:
                per_metric[metric] = series.values[row]
                layers = layers or series.layers
        if not per_metric:
            raise errors.NotFoundError(
                f"Run {run!r} has no recorded step {step}"
            )
        body = {"run": run, "step": step, "layers": layers, "metrics": per_metric}
        return http_util.Respond(request, to_json(body), "application/json")

    @werkzeug.wrappers.Request.application
    def _serve_findings(self, request):
        run = _required(request, "run")
        ctx, experiment, listing = self._listing(request.environ)
        self._run_tags(listing, run)  # NotFoundError for an unknown run
        body = {"run": run, "available": False, "step": None, "final": False,
                "findings": []}
        tags = listing.get(run) or {}
        series = None
        for tag in metadata.tags_for_reading(metadata.FINDINGS_TAG):
            series = _latest(series, tags.get(tag))
        if series is not None:
            document = self._read_findings(ctx, experiment, run, series)
            if document is not None:
                body.update(document)
        return http_util.Respond(request, body, "application/json")

    def _read_findings(self, ctx, experiment, run, time_series):
        """The run's latest findings document, validated; cached until it changes."""
        key = (experiment, run, metadata.FINDINGS_TAG)
        version = (time_series.max_step, time_series.max_wall_time)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
        data = self._read_tensors(
            ctx, experiment, run, metadata.FINDINGS_TAG, "findings document"
        )
        document = None
        if data:
            latest = max(data, key=lambda d: (d.step, d.wall_time))
            document = parse_findings_document(latest.numpy)
        self._remember(key, version, document)
        return document

    @werkzeug.wrappers.Request.application
    def _serve_static(self, request):
        name = request.path.rsplit("/static/", 1)[-1]
        path = _static_path(name)
        with open(path, "rb") as f:
            contents = f.read()
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith(".js"):
            mimetype = "text/javascript"
        return http_util.Respond(request, contents, mimetype)


def parse_findings_document(value):
    """Decodes a findings document (a string tensor of JSON).

    Returns:
        `{"available", "step", "final", "findings": [...]}`, validated by
        `findings_document.parse_document`, or None if `value` is not a
        findings document.
    """
    try:
        text = np.asarray(value, dtype=object).reshape(-1)[0]
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        document = findings_document.parse_document(json.loads(text))
    except (IndexError, ValueError, TypeError, UnicodeDecodeError):
        return None
    if document is None:
        return None
    return {"available": True, "step": document["step"], "final": document["final"],
            "findings": document["findings"]}


def _static_path(name):
    """The file under static/ called `name`; NotFoundError for anything else
    (werkzeug has already percent-decoded the path; `safe_join` refuses
    whatever would leave the folder)."""
    path = safe_join(_STATIC_DIR, name)
    if path is None or not os.path.isfile(path):
        raise errors.NotFoundError(f"No static file {name!r}")
    return path


def _latest(series, other):
    """Of two time series (either may be None), the one written last."""
    if series is None or other is None:
        return other if series is None else series
    return max(series, other, key=lambda t: (t.max_step, t.max_wall_time))


def _run_tag_filter(run, tags):
    from tensorboard.data import provider

    return provider.RunTagFilter(runs=[run], tags=list(tags))


def _chosen_metrics(run, metrics, wanted):
    """The subset of `metrics` named in the comma-separated `wanted`."""
    names = [name for name in wanted.split(",") if name]
    if not names or len(wanted) > 4096:
        raise errors.InvalidArgumentError(
            "Parameter 'metrics' must be a comma-separated list of metric names"
        )
    unknown = [name for name in names if name not in metrics]
    if unknown:
        raise errors.NotFoundError(
            f"Run {run!r} has no metric {unknown[0]!r}; it has "
            f"{sorted(metrics, key=metadata.metric_order)}"
        )
    return {name: metrics[name] for name in names}


def _checked(route, handler):
    """`handler`, refusing query parameters `route` does not take."""
    allowed = ROUTES[route]

    def serve(environ, start_response):
        request = werkzeug.wrappers.Request(environ)
        unknown = sorted(set(request.args) - set(allowed))
        if unknown:
            raise errors.InvalidArgumentError(
                f"Route {route!r} takes no parameter {unknown[0][:100]!r}; "
                f"it takes {list(allowed)}"
            )
        return handler(environ, start_response)

    return serve


def _required(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"Missing parameter {name!r}")
    if len(value) > 4096:
        raise errors.InvalidArgumentError(f"Parameter {name!r} is too long")
    return value


def _int_param(request, name, default, low, high):
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise errors.InvalidArgumentError(f"Missing parameter {name!r}")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgumentError(
            f"Parameter {name!r} must be an integer, got {raw[:100]!r}"
        ) from None
    if not low <= value <= high:
        raise errors.InvalidArgumentError(
            f"Parameter {name!r} must be between {low} and {high}, got {value}"
        )
    return value


def samples_per_series(sampling_hints):
    """How many steps of each series to read from TensorBoard.

    Args:
        sampling_hints: TensorBoard's `--samples_per_plugin` as a dict
            (`context.sampling_hints`); the loader sets GradWatch's entry to
            `metadata.SAMPLES_PER_SERIES` unless the user chose one.

    Returns:
        The user's `gradwatch=N`, `ALL_SAMPLES` for `gradwatch=0` (TensorBoard's
        "keep every step"), else `metadata.SAMPLES_PER_SERIES`.
    """
    samples = (sampling_hints or {}).get(
        metadata.PLUGIN_NAME, metadata.SAMPLES_PER_SERIES
    )
    return ALL_SAMPLES if samples == 0 else int(samples)


def _series_of(data, layers):
    """A `Series` from the data provider's tensors; a step whose tensor is
    not a vector of numbers, one per layer, is left out (a damaged record
    loses its step only), and a step written twice keeps its later record."""
    steps, rows = [], []
    for datum in data:
        array = datum.numpy
        if (
            isinstance(array, np.ndarray)
            and array.dtype.kind in "fiu"
            and array.size == len(layers)
        ):
            steps.append(datum.step)
            rows.append(array.reshape(-1))
    if not steps:
        return Series(np.zeros(0, np.int64), np.zeros((0, len(layers)), np.float32), layers)
    steps = np.asarray(steps, dtype=np.int64)
    # The last occurrence of each step, in step order.
    unique, last_from_end = np.unique(steps[::-1], return_index=True)
    rows_kept = len(steps) - 1 - last_from_end
    values = np.stack(rows).astype(np.float32, copy=False)[rows_kept]
    return Series(unique, values, layers)


def _cache_bytes(cache):
    return sum(
        value.values.nbytes
        for _, value in cache.values()
        if isinstance(value, Series)
    )


# Codes of the binary heatmap (`quantise`): 0..CODE_LEVELS-1 are values,
# the rest the values no scale can place.
CODE_LEVELS = 65532
CODE_ZERO = 65532  # exactly 0 on a log10 encoding
CODE_NEG_INF = 65533
CODE_POS_INF = 65534
CODE_NAN = 65535


def quantise(values, scale):
    """Encodes float values as uint16 codes with their scale.

    Metrics coloured on a log scale (`"log"`, `"ratio"`) whose finite values
    are all >= 0 are encoded on log10 (0 gets `CODE_ZERO`); the rest linearly,
    from a whole number of steps below 0 (so 0 stays 0). Integers spanning fewer than `CODE_LEVELS` values (counts) are encoded
    exactly. NaN, +Inf and -Inf get codes of their own.

    Args:
        values: Float array of any shape.
        scale: The metric's colour scale (`metadata.MetricInfo.scale`).

    Returns:
        `(codes, encoding)`: a uint16 array of `values`' shape, and
        `{"transform": "log10" | "linear", "offset", "step"}`: a code `c`
        below `CODE_LEVELS` stands for `offset + c * step`, raised to the power
        of 10 for `"log10"`. Each value is within `step / 2` of its code's in
        that (transformed) space.

    Example:

    >>> codes, enc = quantise(np.array([1.0, 100.0, np.nan]), "log")
    >>> codes.tolist(), enc["transform"]
    ([0, 65530, 65535], 'log10')
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.full(values.shape, CODE_NAN, dtype=np.uint16)
    codes[values == np.inf] = CODE_POS_INF
    codes[values == -np.inf] = CODE_NEG_INF
    finite = np.isfinite(values)
    shown = values[finite]
    transform = "linear"
    if scale in ("log", "ratio") and shown.size and shown.min() >= 0:
        transform = "log10"
        codes[finite & (values == 0)] = CODE_ZERO
        finite &= values > 0
        shown = np.log10(values[finite])
    if not shown.size:
        return codes, {"transform": transform, "offset": 0.0, "step": 1.0}
    low, span = float(shown.min()), float(shown.max() - shown.min())
    if transform == "linear" and span < CODE_LEVELS and np.all(shown == np.rint(shown)):
        step = 1.0  # counts, exactly
    else:
        step = span / (CODE_LEVELS - 2) or 1.0
    # A whole number of steps below 0, so that a linear 0 decodes to 0.
    offset = float(np.floor(low / step) * step)
    codes[finite] = np.clip(np.rint((shown - offset) / step), 0, CODE_LEVELS - 1)
    return codes, {"transform": transform, "offset": offset, "step": step}


def _respond_binary(request, header, values, scale):
    """The heatmap as `application/octet-stream`: a little-endian uint32
    header length, the JSON header (padded with spaces to a multiple of 4
    bytes), then the uint16 codes of `values`, column by column (see
    docs/http_api.md)."""
    codes, encoding = quantise(values, scale)
    encoding.update(
        zero=CODE_ZERO, neg_inf=CODE_NEG_INF, pos_inf=CODE_POS_INF, nan=CODE_NAN
    )
    text = to_json(dict(header, columns=int(codes.shape[0]), encoding=encoding))
    head = text.encode("utf-8")
    head += b" " * (-(4 + len(head)) % 4)
    body = b"".join(
        [np.uint32(len(head)).astype("<u4").tobytes(), head,
         codes.astype("<u2").tobytes()]
    )
    return http_util.Respond(request, body, "application/octet-stream")


def to_json(value):
    """JSON text of a response body, with float arrays written fast.

    TensorBoard's `Respond` would walk every float of a 1000 x 200 heatmap in
    Python to spell NaN and Infinity as strings; here numpy writes each
    float array at once, in the shortest text that round-trips its float32
    value (what the callback recorded), with the same "NaN", "Infinity" and
    "-Infinity" strings.

    Args:
        value: Dicts, lists, strings, numbers and numpy arrays.

    Returns:
        A `str`.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return json.dumps(value.tolist())
        return _float_array_json(value.astype(np.float32, copy=False))
    if isinstance(value, dict):
        return "{" + ",".join(
            f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()
        ) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(json_util.Cleanse(value))


def _float_array_json(array):
    text = array.astype("<U32")
    text[np.isnan(array)] = '"NaN"'
    text[np.isposinf(array)] = '"Infinity"'
    text[np.isneginf(array)] = '"-Infinity"'
    return _nested(text)


def _nested(text):
    if text.ndim == 0:
        return str(text)
    if text.ndim == 1:
        return "[" + ",".join(text.tolist()) + "]"
    return "[" + ",".join(_nested(row) for row in text) + "]"


def downsample(steps, values, max_columns, scale):
    """Merges consecutive recorded steps into at most `max_columns` columns.

    Args:
        steps: Sorted int array of recorded steps, length T.
        values: Float array [T, layers].
        max_columns: The most columns to return.
        scale: The metric's colour scale (see `metadata.MetricInfo`):
            "fraction" and "count" keep each column's max (the worst value);
            other metrics keep the real value at the column's last step.

    Returns:
        `(steps, step_ranges, values)`: each column's last step, its
        `[first, last]` steps, and its values [columns, layers].
    """
    total = len(steps)
    if total <= max_columns:
        ranges = np.stack([steps, steps], axis=1) if total else np.zeros((0, 2), np.int64)
        return steps, ranges, values
    edges = np.linspace(0, total, max_columns + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if scale in ("fraction", "count"):
        # fmax ignores NaN unless every value of the column is NaN.
        reduced = np.fmax.reduceat(values, starts, axis=0)
    else:
        reduced = values[ends - 1]
    ranges = np.stack([steps[starts], steps[ends - 1]], axis=1)
    return steps[ends - 1], ranges, reduced

