"""Reads back what `GradWatch` wrote: `gradwatch.load(log_dir)`."""

import json
import os
import sys

import numpy as np
from tensorboard.compat.proto import event_pb2, types_pb2

from gradwatch_tensorboard import findings_document, metadata, storage
from gradwatch_tensorboard.records import event_at, frame_offsets, read_records


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
        recorded_findings: The findings document the callback wrote last,
            as `gradwatch_tensorboard.findings_document.parse_document` reads
            it (`{"version", "step", "final", "thresholds", "findings"}`), or
            None. `findings()` evaluates the whole record afresh instead.
    """

    def __init__(self, log_dir, layers, steps, values, scalars, documents, distributions=None):
        self.log_dir = log_dir
        self.layers = layers
        self.steps = steps
        self._values = values
        self._distributions = distributions or {}
        self.distributions = [
            name for name in metadata.DISTRIBUTION_NAMES if name in self._distributions
        ]
        self._scalars = scalars
        self.metrics = sorted(values, key=metadata.metric_order)
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

    def distribution(self, name):
        """One distribution series, recorded at `histogram_freq` steps.

        Args:
            name: A name from `self.distributions`
                (`gradwatch_tensorboard.metadata.DISTRIBUTIONS`).

        Returns:
            `(steps, values)`: the steps it was recorded at (int64), and a
            float ndarray `[len(steps), len(layers), width]`: per step and
            layer, the counts in each of `metadata.histogram_bins()` (for
            a histogram) or each unit's share (for a unit series), NaN where
            the layer was not recorded then.

        Example:

        >>> steps, counts = run.distribution("activation_histogram")
        >>> counts[-1, run.layers.index("dense")]  # the last one's bins
        """
        if name not in self._distributions:
            raise KeyError(
                f"No distribution {name!r} in {self.log_dir!r}. "
                f"Present: {self.distributions}"
            )
        steps, values = self._distributions[name]
        return steps.copy(), values.copy()

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

    def to_records(self, metrics=None, run=None):
        """The record as a NumPy structured array, one row per metric, layer
        and step: see `gradwatch.export.to_records`."""
        from . import export

        return export.to_records(self, metrics, run)

    def to_frame(self, metrics=None, run=None):
        """The record as a long pandas DataFrame (`run`, `metric`, `layer`,
        `step`, `value`): see `gradwatch.export.to_frame`. Needs pandas."""
        from . import export

        return export.to_frame(self, metrics, run)

    def plot(self, metric, step=None, figsize=None):
        """Draws one metric's layer x step heatmap and its depth profile with
        matplotlib: see `gradwatch.plot.plot`. Returns the Figure."""
        from . import plot

        return plot.plot(self, metric, step, figsize)

    def __repr__(self):
        return (
            f"Recording({self.log_dir!r}, {len(self.layers)} layers, "
            f"{len(self.steps)} steps, {len(self.metrics)} metrics)"
        )


def _event_files(log_dir):
    return [
        storage.join(log_dir, name)
        for name in sorted(storage.listdir(log_dir))
        if "tfevents" in name
    ]


def _gradwatch_layers(event):
    for value in event.summary.value:
        if (
            value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
            and metadata.metric_from_tag(value.tag) is not None
        ):
            try:
                return metadata.parse_plugin_content(
                    value.metadata.plugin_data.content
                )["layers"]
            except ValueError:
                return None
    return None


def describe(log_dir):
    """What GradWatch records `log_dir` holds, reading little of them.

    Each event file's frame headers are skipped through; only the events up
    to its first GradWatch record and its last intact event are decoded, so
    this takes a fraction of `load`'s time on a long run.

    Args:
        log_dir: A directory (local or remote).

    Returns:
        `(layers, first_step, last_step)`, layers in order of first
        appearance; or None if `log_dir` is missing or holds no GradWatch
        records.
    """
    if not storage.isdir(log_dir):
        return None
    layers, steps = [], []
    for path in _event_files(log_dir):
        with storage.open(path, "rb") as f:
            frames = list(frame_offsets(f))
            first = None
            for offset, length in frames:
                event = event_at(f, offset, length)
                if event is None:
                    break
                names = _gradwatch_layers(event)
                if names:
                    first = event.step
                    layers.extend(n for n in names if n not in layers)
                    break
            if first is None:
                continue
            steps.append(first)
            for offset, length in reversed(frames[-2:]):
                event = event_at(f, offset, length)
                if event is not None:
                    steps.append(event.step)
                    break
    if not steps:
        return None
    return layers, min(steps), max(steps)


def _records(path):
    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "compat"):
        yield from read_records(path)
        return
    # In a process that has TensorFlow already (a training script), its C++
    # reader checks the same frames many times faster.
    try:
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()
    except tf.errors.OpError:  # a truncated or corrupt frame ends the file
        return


def _read_events(path):
    """Events of one file; a truncated or corrupt tail ends the file."""
    for data in _records(path):
        try:
            yield event_pb2.Event.FromString(data)
        except Exception:  # A record that is no Event: keep what came before.
            return


_FLOAT_TYPES = {types_pb2.DT_FLOAT: "<f4", types_pb2.DT_DOUBLE: "<f8"}


def _numbers(tensor):
    """The float values of a TensorProto as a flat float64 array."""
    dtype = _FLOAT_TYPES.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"not a float tensor: dtype {tensor.dtype}")
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype).astype(np.float64)
    values = tensor.float_val if tensor.dtype == types_pb2.DT_FLOAT else tensor.double_val
    return np.array(values, np.float64)


def _document(tensor):
    """The JSON document in a string TensorProto, or None."""
    if tensor.dtype != types_pb2.DT_STRING or len(tensor.string_val) != 1:
        return None
    try:
        return json.loads(tensor.string_val[0].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


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
    if not storage.isdir(log_dir):
        raise FileNotFoundError(f"No such log directory: {log_dir!r}")
    layers = []  # ordered union over files
    records = {}  # step -> (wall_time, {metric: (layer names, vector)})
    scalars = {}  # name -> {step: value}
    documents = {}
    distributions = {}  # name -> {step: (layer names, [layers, width])}
    for path in _event_files(log_dir):
        tag_layers = {}
        for event in _read_events(path):
            for value in event.summary.value:
                _take_value(
                    event, value, tag_layers, layers, records, scalars, documents,
                    distributions,
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
    return Recording(
        log_dir, layers, steps, values, scalar_arrays, documents,
        {name: _stacked(by_step, index) for name, by_step in distributions.items()},
    )


def _stacked(by_step, index):
    """`(steps, [steps, layers, width] array)` of one distribution series."""
    steps = np.array(sorted(by_step), dtype=np.int64)
    width = next(iter(by_step.values()))[1].shape[1]
    values = np.full((len(steps), len(index), width), np.nan)
    for row, step in enumerate(steps):
        names, matrix = by_step[step]
        values[row, [index[n] for n in names]] = matrix
    return steps, values


def _take_value(event, value, tag_layers, layers, records, scalars, documents, distributions):
    parsed = metadata.parse_tag(value.tag)  # either tag scheme
    if parsed is None:
        return
    kind, name = parsed
    if kind == metadata.DOCUMENT:
        _take_document(metadata.tag(kind, name), value.tensor, documents)
        return
    if kind == metadata.HEADLINE:
        try:
            number = _numbers(value.tensor)
        except ValueError:
            return
        if number.size == 1:
            scalars.setdefault(name, {})[event.step] = float(number[0])
        return
    tag = value.tag
    if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
        try:
            content = metadata.parse_plugin_content(value.metadata.plugin_data.content)
        except ValueError:
            return
        names = content["layers"]
        tag_layers[tag] = (names, content["width"])
        for layer in names:
            if layer not in layers:
                layers.append(layer)
    if tag not in tag_layers:
        return
    try:
        vector = _numbers(value.tensor)
    except ValueError:
        return
    names, width = tag_layers[tag]
    if vector.shape != (len(names) * width,):
        return
    if kind == metadata.DISTRIBUTION:
        if name in metadata.DISTRIBUTIONS and width == metadata.DISTRIBUTIONS[name].width:
            # A later rewrite of this step replaces it.
            distributions.setdefault(name, {})[event.step] = (
                names, vector.reshape(len(names), width)
            )
        return
    wall_time, record = records.get(event.step, (-1.0, {}))
    if event.wall_time >= wall_time and name in record:
        record = {}  # a later rewrite of this step replaces it
    record[name] = (names, vector)
    records[event.step] = (max(wall_time, event.wall_time), record)


def _take_document(tag, tensor, documents):
    """Keeps the latest document of `tag` (files and events are read in
    order); the findings document as `findings_document` validates it."""
    document = _document(tensor)
    if tag == metadata.FINDINGS_TAG:
        document = findings_document.parse_document(document)
    elif tag not in (metadata.INIT_AUDIT_TAG, metadata.FIRST_NONFINITE_TAG):
        return
    if document is not None:
        documents[tag] = document
