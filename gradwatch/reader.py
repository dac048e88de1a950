"""Reads back what `GradWatch` wrote: `gradwatch.load(log_dir)`."""

import glob
import json
import os

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from gradwatch_tensorboard import metadata


class Recording:
    """The GradWatch record of one run.

    Attributes:
        log_dir: The directory it was read from.
        layers: Watched layer names in forward (depth) order; layers of
            nested models as `outer/inner`.
        steps: 1-D int64 array of recorded global steps, strictly increasing.
        metrics: Names of the metrics present.
        headlines: Names of the headline scalars present.
        init_audit: The init audit (list of dicts) of the latest `fit`, or
            None.
        first_nonfinite: `{"step", "layer", "kind"}` of the first NaN/Inf, or
            None.
        recorded_findings: The findings document the callback wrote last
            (`{"version", "step", "final", "findings": [...]}`), or None.
            `findings()` evaluates the whole record afresh instead.
    """

    def __init__(self, log_dir, layers, steps, values, scalars, documents):
        self.log_dir = log_dir
        self.layers = layers
        self.steps = steps
        self._values = values
        self._scalars = scalars
        self.metrics = sorted(values, key=_metric_order)
        self.headlines = sorted(scalars)
        self.init_audit = documents.get(metadata.INIT_AUDIT_TAG)
        self.first_nonfinite = documents.get(metadata.FIRST_NONFINITE_TAG)
        self.recorded_findings = documents.get(metadata.FINDINGS_TAG)

    def metric(self, name):
        """Values of one metric.

        Args:
            name: A name from `self.metrics`.

        Returns:
            A float ndarray `[len(steps), len(layers)]`, NaN where the metric
            does not apply to a layer (or the layer was not recorded then).
        """
        if name not in self._values:
            raise KeyError(
                f"No metric {name!r} in {self.log_dir!r}. "
                f"Metrics present: {self.metrics}"
            )
        return self._values[name].copy()

    def findings(self, thresholds=None):
        """Named problems in this record, with remedies.

        Args:
            thresholds: A `gradwatch.findings.Thresholds`, or None for the
                defaults.

        Returns:
            A list of `gradwatch.findings.Finding`, warnings first.
        """
        from . import findings  # numpy only

        return findings.evaluate(self, thresholds)

    def headline(self, name):
        """A headline scalar as a float ndarray over `steps` (NaN if absent)."""
        if name not in self._scalars:
            raise KeyError(
                f"No headline {name!r} in {self.log_dir!r}. "
                f"Present: {self.headlines}"
            )
        return self._scalars[name].copy()

    def __repr__(self):
        return (
            f"Recording({self.log_dir!r}, {len(self.layers)} layers, "
            f"{len(self.steps)} steps, {len(self.metrics)} metrics)"
        )


def _metric_order(name):
    names = metadata.METRIC_NAMES
    return (names.index(name) if name in names else len(names), name)


def _event_files(log_dir):
    return sorted(glob.glob(os.path.join(glob.escape(log_dir), "*tfevents*")))


def _read_events(path):
    """Events of one file; a truncated or corrupt tail ends the file."""
    try:
        yield from event_file_loader.EventFileLoader(path).Load()
    except Exception:  # A damaged record: keep what came before it.
        return


def load(log_dir):
    """Reads what GradWatch wrote into `log_dir`.

    Several event files (several `fit` calls, resumed training) are merged by
    step; where a step was written twice, the later record wins.

    Args:
        log_dir: The `log_dir` given to `GradWatch`.

    Returns:
        A `Recording`.

    Raises:
        FileNotFoundError: if `log_dir` does not exist.
        ValueError: if it holds no GradWatch data.

    Example:

    >>> run = gradwatch.load("runs/exp1")
    >>> run.metric("dead_fraction")[-1]  # per layer, at the last step
    """
    log_dir = os.fspath(log_dir)
    if not os.path.isdir(log_dir):
        raise FileNotFoundError(f"No such log directory: {log_dir!r}")
    layers = []  # ordered union over files
    records = {}  # step -> (wall_time, {metric: (layer names, vector)})
    scalars = {}  # name -> {step: value}
    documents = {}
    for path in _event_files(log_dir):
        tag_layers = {}
        for event in _read_events(path):
            for value in event.summary.value:
                _take_value(
                    event, value, tag_layers, layers, records, scalars, documents
                )
    if not records:
        raise ValueError(
            f"No GradWatch data in {log_dir!r}: no event file there holds "
            "GradWatch summaries. Pass the log_dir given to GradWatch."
        )
    steps = np.array(sorted(records), dtype=np.int64)
    index = {name: i for i, name in enumerate(layers)}
    metric_names = {m for _, rec in records.values() for m in rec}
    values = {
        m: np.full((len(steps), len(layers)), np.nan) for m in metric_names
    }
    for row, step in enumerate(steps):
        for m, (names, vector) in records[step][1].items():
            values[m][row, [index[n] for n in names]] = vector
    scalar_arrays = {
        name: np.array([by_step.get(int(s), np.nan) for s in steps])
        for name, by_step in scalars.items()
    }
    return Recording(log_dir, layers, steps, values, scalar_arrays, documents)


def _take_value(event, value, tag_layers, layers, records, scalars, documents):
    tag = value.tag
    if tag == metadata.FINDINGS_TAG:
        # The latest document wins (files and events are read in order).
        text = tensor_util.make_ndarray(value.tensor).reshape(-1)[0]
        try:
            document = json.loads(text.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(document, dict):
            documents[tag] = document
        return
    if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
        try:
            names = metadata.parse_plugin_content(
                value.metadata.plugin_data.content
            )["layers"]
        except ValueError:
            return
        tag_layers[tag] = names
        for name in names:
            if name not in layers:
                layers.append(name)
    metric = metadata.metric_from_tag(tag)
    if metric is not None and tag in tag_layers:
        vector = tensor_util.make_ndarray(value.tensor).astype(np.float64)
        names = tag_layers[tag]
        if vector.shape != (len(names),):
            return
        wall_time, record = records.get(event.step, (-1.0, {}))
        if event.wall_time >= wall_time and metric in record:
            record = {}  # a later rewrite of this step replaces it
        record[metric] = (names, vector)
        records[event.step] = (max(wall_time, event.wall_time), record)
    elif tag.startswith(metadata.SCALAR_TAG_PREFIX):
        number = tensor_util.make_ndarray(value.tensor)
        scalars.setdefault(tag[len(metadata.SCALAR_TAG_PREFIX):], {})[
            event.step
        ] = float(number)
    elif tag in (metadata.INIT_AUDIT_TAG, metadata.FIRST_NONFINITE_TAG):
        text = tensor_util.make_ndarray(value.tensor).reshape(-1)[0]
        try:
            documents[tag] = json.loads(text.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            pass
