"""The GradWatch tab: serves layer x step heatmaps and depth profiles.

Reads series through `context.data_provider` (`list_tensors` /
`read_tensors`; from TensorBoard's default Rust data server as one packed
matrix, `vector_reads`), so it works with that server and with the Python
multiplexer alike; the depth profile reads its one step from the run's event
files (`step_index`). Imports no TensorFlow.

Routes (relative to the plugin's folder; `ROUTES` lists each with its
parameters, and docs/http_api.md documents every parameter, field and error):
- `runs`: every run with GradWatch data, its metrics and layers, and the
  metric list (names, labels, colour scales) the page shows.
- `heatmap?run=R&metric=M[&max_columns=N][&start_step=A&end_step=B]
  [&format=binary]`: the recorded steps in [A, B] x layers, downsampled on the
  server into at most N columns (and the recorded step before A whose column
  covers A). Fractions and counts keep the worst (max) value of each column,
  so a short-lived pathology never averages away; other metrics keep the real
  value at the column's last step. The page zooms by asking for the visible
  range at one column per pixel, in the binary format (`heatmap_body`).
- `profile?run=R&step=S[&metrics=M1,M2]`: every metric (or the ones named)
  across layers at one recorded step, read from that step's record in the
  event files (indexed in the background when `runs` lists the run); with
  `--logdir_spec`, from the series.
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
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from tensorboard.util import tensor_util

from . import distributions, findings_document, heatmap_body, metadata, step_index, storage
from . import vector_reads
from .request_params import (
    DEFAULT_MAX_COLUMNS, MAX_COLUMNS_LIMIT, MAX_STEP, int_param, required, run_tag_filter,
)
from .heatmap_body import to_json

_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
HEATMAP_FORMATS = ("json", "binary")
# What `read_tensors` is asked for when `--samples_per_plugin gradwatch=0`
# (TensorBoard's "keep every step"): it returns nothing for 0.
ALL_SAMPLES = 2**31 - 1
# The series cache's budget: every metric of a run at 20,000 steps x 500
# layers (19 x 38 MiB), so that the depth profile of every metric at any step
# answers from memory.
_CACHE_BYTES = 768 * 2**20

# The bytes of rendered heatmap bodies kept (`heatmap_body.render_heatmap`): 20 JSON
# bodies of 500 layers x 1,000 columns, or 130 binary ones.
_RENDERED_BYTES = 128 * 2**20

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
        # Where the run directories are, for the depth profile's step
        # index; none with `--logdir_spec` (run names are not paths then).
        logdir = getattr(context, "logdir", None) or None
        if logdir and not storage.is_remote(logdir):
            logdir = os.path.expanduser(logdir)
        self._logdir = logdir
        self._indices = {}
        # Heatmap bodies by series version and request: a page's refresh, a
        # second tab, or a script repeating a request, costs no rendering.
        self._rendered = collections.OrderedDict()
        self._indexing = False
        if self._logdir:
            self._index_in_background("")
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
        layers = _series_layers(run, metric, time_series)
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
            tag = metadata.metric_tag(metric)
            packed = vector_reads.read_vectors(
                self._data_provider, experiment, run, metadata.tags_for_reading(tag),
                self._samples, len(layers),
            )
            if packed is not None:
                series = _latest_per_step(*packed, layers)
            else:
                data = self._read_tensors(ctx, experiment, run, tag, f"metric {metric!r}")
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
                run_tag_filter=run_tag_filter(run, metadata.tags_for_reading(tag)),
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
        _, experiment, listing = self._listing(request.environ)
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
        self._index_in_background(experiment, [r["run"] for r in runs])
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
        run = required(request, "run")
        metric = required(request, "metric")
        max_columns = int_param(
            request, "max_columns", DEFAULT_MAX_COLUMNS, 1, MAX_COLUMNS_LIMIT
        )
        start_step = int_param(request, "start_step", 0, 0, MAX_STEP)
        end_step = int_param(request, "end_step", MAX_STEP, 0, MAX_STEP)
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
        time_series = metrics[metric]
        series = self._read_series(ctx, experiment, run, metric, time_series)
        self._warm(ctx, experiment, run, metrics)
        key = (experiment, run, metric, time_series.max_step, time_series.max_wall_time,
               start_step, end_step, max_columns, encoding)
        with self._cache_lock:
            body = self._rendered.get(key)
            if body is not None:
                self._rendered.move_to_end(key)
        if body is None:
            body = heatmap_body.render_heatmap(run, metric, series, start_step, end_step, max_columns, encoding)
            with self._cache_lock:
                self._rendered[key] = body
                while len(self._rendered) > 1 and sum(
                    len(b) for b in self._rendered.values()
                ) > _RENDERED_BYTES:
                    self._rendered.popitem(last=False)
        mimetype = "application/octet-stream" if encoding == "binary" else "application/json"
        return http_util.Respond(request, body, mimetype)

    def _step_index(self, experiment, run):
        """The `StepIndex` of a run's directory, or None if the run is not a
        directory under `--logdir`."""
        if not self._logdir or experiment:
            return None
        with self._cache_lock:
            if run in self._indices:
                return self._indices[run]
        directory = self._logdir if run == "." else storage.join(self._logdir, *run.split("/"))
        try:
            index = step_index.StepIndex(directory) if storage.isdir(directory) else None
        except (OSError, ImportError):
            index = None
        with self._cache_lock:
            return self._indices.setdefault(run, index)

    def _index_in_background(self, experiment, runs=None):
        """Brings the step index of `runs` up to date in a background
        thread (one at a time), so that a first click on a step finds it
        built: a 100,000-step run takes about half a second to index.

        Args:
            experiment: The experiment id.
            runs: Run names; None for every directory under the log dir
                holding GradWatch's own event files (`*.gradwatch`), which
                the plugin indexes as TensorBoard starts, while TensorBoard
                loads them.
        """
        with self._cache_lock:
            if self._indexing:
                return
            self._indexing = True

        def index_all():
            try:
                for run in runs if runs is not None else _gradwatch_runs(self._logdir):
                    index = self._step_index(experiment, run)
                    if index is not None:
                        try:
                            index.update()
                        except OSError:
                            pass  # Its profile request falls back, or reports it.
            finally:
                with self._cache_lock:
                    self._indexing = False

        threading.Thread(target=index_all, name="gradwatch-index", daemon=True).start()

    def _profile_from_files(self, experiment, run, step, metrics):
        """`(layers, {metric: values})` at `step`, read from the run's event
        files; None if the run has no step index or its files can't be read."""
        index = self._step_index(experiment, run)
        if index is None:
            return None
        try:
            index.update()
            events = index.events(step)  # in the order written: the last wins
        except OSError:
            return None
        per_metric = {}
        for event in events:
            for value in event.summary.value:
                metric = metadata.metric_from_tag(value.tag)
                # Only what TensorBoard has read too: past a damaged record
                # (which may end its reading) or a frame it has not reached
                # yet, a heatmap would not show the step either.
                if metric not in metrics or step > metrics[metric].max_step:
                    continue
                layers = _series_layers(run, metric, metrics[metric])
                try:
                    array = tensor_util.make_ndarray(value.tensor)
                except (TypeError, ValueError):
                    continue  # a damaged record
                if array.dtype.kind in "fiu" and array.size == len(layers):
                    per_metric[metric] = array.reshape(-1).astype(np.float32)
        ordered = sorted(per_metric, key=metadata.metric_order)
        layers = _series_layers(run, ordered[0], metrics[ordered[0]]) if ordered else None
        return layers, {metric: per_metric[metric] for metric in ordered}

    @werkzeug.wrappers.Request.application
    def _serve_profile(self, request):
        run = required(request, "run")
        step = int_param(request, "step", None, 0, MAX_STEP)
        wanted = request.args.get("metrics")
        ctx, experiment, listing = self._listing(request.environ)
        metrics = self._run_tags(listing, run)
        if wanted is not None:
            metrics = _chosen_metrics(run, metrics, wanted)
        # From the series if all are in memory (a heatmap was read: a few
        # ms), else from the step's own record, else reading the series.
        layers, per_metric = self._profile_from_series(
            ctx, experiment, run, step, metrics, cached_only=True
        )
        if not per_metric:
            layers, per_metric = self._profile_from_files(
                experiment, run, step, metrics
            ) or self._profile_from_series(ctx, experiment, run, step, metrics)
        if not per_metric:
            raise errors.NotFoundError(
                f"Run {run!r} has no recorded step {step}"
            )
        body = {"run": run, "step": step, "layers": layers, "metrics": per_metric}
        return http_util.Respond(request, to_json(body), "application/json")

    def _profile_from_series(self, ctx, experiment, run, step, metrics, cached_only=False):
        """`(layers, {metric: values})` at `step`, from the series (with
        `cached_only`, `(None, {})` unless every one is in memory)."""
        layers, per_metric = None, {}
        if cached_only:
            with self._cache_lock:
                cached = [self._cache.get((experiment, run, metric)) for metric in metrics]
            versions = [(t.max_step, t.max_wall_time) for t in metrics.values()]
            if not all(c is not None and c[0] == v for c, v in zip(cached, versions)):
                return None, {}
        for metric in sorted(metrics, key=metadata.metric_order):
            series = self._read_series(
                ctx, experiment, run, metric, metrics[metric]
            )
            row = np.searchsorted(series.steps, step)
            if row < len(series.steps) and series.steps[row] == step:
                per_metric[metric] = series.values[row]
                layers = layers or series.layers
        return layers, per_metric

    @werkzeug.wrappers.Request.application
    def _serve_findings(self, request):
        run = required(request, "run")
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


def _gradwatch_runs(logdir):
    """The run names (TensorBoard's: paths relative to `logdir`, `.` for
    itself) of the directories holding event files GradWatch wrote."""
    try:
        for directory, _, files in storage.walk(logdir):
            if any("tfevents" in name and name.endswith(".gradwatch") for name in files):
                yield directory[len(logdir):].strip("/" + os.sep).replace(os.sep, "/") or "."
    except OSError:
        return


def _series_layers(run, metric, time_series):
    """The layer names of a series, from its metadata; InvalidArgumentError
    if that is not GradWatch's."""
    try:
        return metadata.parse_plugin_content(time_series.plugin_content)["layers"]
    except ValueError as e:
        raise errors.InvalidArgumentError(f"Run {run!r}, metric {metric!r}: {e}") from e


def _latest(series, other):
    """Of two time series (either may be None), the one written last."""
    if series is None or other is None:
        return other if series is None else series
    return max(series, other, key=lambda t: (t.max_step, t.max_wall_time))


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
        return _latest_per_step(np.zeros(0, np.int64), np.zeros((0, len(layers))), layers)
    return _latest_per_step(np.asarray(steps, dtype=np.int64), np.stack(rows), layers)


def _latest_per_step(steps, values, layers):
    """A `Series` of `values` [T, layers] at `steps` [T], in step order; a
    step written twice keeps its later row."""
    unique, last_from_end = np.unique(steps[::-1], return_index=True)
    rows_kept = len(steps) - 1 - last_from_end
    return Series(unique, values.astype(np.float32, copy=False)[rows_kept], layers)


def _cache_bytes(cache):
    return sum(
        value.values.nbytes
        for _, value in cache.values()
        if isinstance(value, Series)
    )
