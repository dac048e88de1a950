"""Writes GradWatch summaries into an event file, without TensorFlow ops.

The callback computes its statistics on the device and hands this writer a
few numbers per layer; writing them is plain protobuf and file I/O, so it
costs no TensorFlow op dispatch and can be used (and tested) without
TensorFlow.
"""

import itertools
import json
import os
import socket
import sys
import time

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2, types_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from . import metadata, storage

_file_numbers = itertools.count()


class _EventFile:
    """One event file, written synchronously: `write` then `flush` puts a
    record on disk before returning.

    TensorBoard's own `EventFileWriter` hands records to a thread and checks
    sums in pure Python (0.6 ms per 5 KB record here); where TensorFlow is
    already loaded (the callback), its C++ record writer does the same
    framing in microseconds.
    """

    def __init__(self, log_dir, suffix):
        storage.makedirs(log_dir)
        self.path = storage.join(
            log_dir,
            "events.out.tfevents.%010d.%s.%s.%s%s"
            % (time.time(), socket.gethostname(), os.getpid(), next(_file_numbers), suffix),
        )
        tf = sys.modules.get("tensorflow")
        if tf is not None and hasattr(tf, "io"):
            self._records = tf.io.TFRecordWriter(self.path)
        else:
            self._records = RecordWriter(storage.open(self.path, "wb"))
        self.write(
            event_pb2.Event(
                wall_time=time.time(),
                file_version="brain.Event:2",
                source_metadata=event_pb2.SourceMetadata(writer="gradwatch"),
            )
        )
        self.flush()

    def write(self, event):
        self._records.write(event.SerializeToString())

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()


def _float_vector(array):
    """A float32 vector as a TensorProto, without `make_tensor_proto`'s
    generality (a tenth of its time)."""
    return _float_matrix(array.reshape(-1))


def _float_matrix(array):
    """A float32 array of any rank as a TensorProto."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]
        ),
        tensor_content=array.astype("<f4", copy=False).tobytes(),
    )


class SummaryWriter:
    """Appends GradWatch records to a new event file in `log_dir`.

    Every record is flushed to disk before `write_step` returns, so an
    interrupted training run keeps everything recorded up to that point.

    Args:
        log_dir: Directory of the run. Created if missing.
        layers: Watched layer names in depth order; labels every vector.

    Example:

    >>> writer = SummaryWriter("runs/exp1", ["dense", "dense_1"])
    >>> writer.write_step(0, {"activation_var": [1.0, 0.9]})
    >>> writer.close()
    """

    def __init__(self, log_dir, layers):
        self._writer = _EventFile(str(log_dir), ".gradwatch")
        self._layer_metadata = metadata.create_summary_metadata(layers)
        self._num_layers = len(layers)
        self._layers = list(layers)
        self._tags_with_metadata = set()

    def _metadata_once(self, tag, make_metadata):
        # TensorBoard keeps the first metadata it sees per tag: write it once
        # per file and keep the rest of the records small.
        if tag in self._tags_with_metadata:
            return None
        self._tags_with_metadata.add(tag)
        return make_metadata()

    def _value(self, tag, tensor_proto, make_metadata):
        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_proto)
        md = self._metadata_once(tag, make_metadata)
        if md is not None:
            value.metadata.CopyFrom(md)
        return value

    def write_step(self, step, layer_metrics, scalars=None):
        """Writes one recorded step and flushes it to disk.

        Args:
            step: The global training step (an int).
            layer_metrics: Dict of metric name to a sequence of one float per
                watched layer.
            scalars: Optional dict of headline scalar name to float, shown in
                TensorBoard's Scalars dashboard.
        """
        values = []
        for name, vector in layer_metrics.items():
            array = np.asarray(vector, dtype=np.float32).reshape(-1)
            if array.size != self._num_layers:
                raise ValueError(
                    f"Metric {name!r} has {array.size} values for "
                    f"{self._num_layers} layers."
                )
            values.append(
                self._value(
                    metadata.metric_tag(name),
                    _float_vector(array),
                    lambda: self._layer_metadata,
                )
            )
        for name, number in (scalars or {}).items():
            tag = metadata.tag(metadata.HEADLINE, name)
            values.append(
                self._value(
                    tag,
                    tensor_util.make_tensor_proto(np.float32(number)),
                    lambda: _scalar_metadata(name),
                )
            )
        self._add(step, values)
        self._writer.flush()

    def write_distributions(self, step, series):
        """Writes one step's distributions and flushes them to disk.

        Args:
            step: The global training step (an int).
            series: Dict of distribution name (`metadata.DISTRIBUTIONS`) to a
                `[layers, width]` array.
        """
        values = []
        for name, matrix in series.items():
            width = metadata.DISTRIBUTIONS[name].width
            array = np.asarray(matrix, dtype=np.float32)
            if array.shape != (self._num_layers, width):
                raise ValueError(
                    f"Distribution {name!r} has shape {array.shape}, not "
                    f"{(self._num_layers, width)}."
                )
            values.append(
                self._value(
                    metadata.tag(metadata.DISTRIBUTION, name),
                    _float_matrix(array),
                    lambda: metadata.create_summary_metadata(self._layers, width),
                )
            )
        self._add(step, values)
        self._writer.flush()

    def write_document(self, step, tag, document, kind=None):
        """Writes a JSON document (for example the init audit) as a string
        tensor, also readable as text in TensorBoard's Text dashboard.

        Args:
            step: The global training step.
            tag: Summary tag.
            document: A JSON-serialisable object.
            kind: None for a Text-dashboard document; a name (e.g.
                `"findings"`) for one served by the GradWatch plugin instead
                (`metadata.create_document_metadata(kind)`).
        """
        text = json.dumps(document, allow_nan=True)
        value = summary_pb2.Summary.Value(
            tag=tag,
            tensor=tensor_util.make_tensor_proto(
                np.array([text.encode("utf-8")], dtype=object)
            ),
        )
        if kind is None:
            value.metadata.plugin_data.plugin_name = "text"
            value.metadata.data_class = summary_pb2.DATA_CLASS_TENSOR
        else:
            md = self._metadata_once(
                tag, lambda: metadata.create_document_metadata(kind)
            )
            if md is not None:
                value.metadata.CopyFrom(md)
        self._add(step, [value])
        self._writer.flush()

    def _add(self, step, values):
        event = event_pb2.Event(
            wall_time=time.time(),
            step=int(step),
            summary=summary_pb2.Summary(value=values),
        )
        self._writer.write(event)

    def close(self):
        """Flushes and closes the event file."""
        self._writer.close()


def _scalar_metadata(name):
    md = scalar_metadata.create_summary_metadata(
        display_name=name, description="GradWatch headline: " + name
    )
    md.data_class = summary_pb2.DATA_CLASS_SCALAR
    return md

