"""Reading a series of float vectors from TensorBoard's data server at once.

`GrpcDataProvider.read_tensors` turns every datum into a numpy array of its
own (`tensor_util.make_ndarray`, one Python call per step): at 20,000 steps
that is most of half a second. The plugin's series are float32 vectors of
one length, so their bytes can be joined and viewed as one matrix instead.
This asks the data server the same `ReadTensors` question the provider
asks, through the provider's own gRPC stub: private to TensorBoard, so
tests/test_tensorboard_contract.py checks it against the real data server.
"""

import numpy as np
from tensorboard.compat.proto import types_pb2

from . import metadata


def read_vectors(data_provider, experiment, run, tags, downsample, width):
    """Steps and values of one float32 vector series, from the data server.

    Args:
        data_provider: `context.data_provider`.
        experiment: The experiment id.
        run: The run.
        tags: The tags the series is written under (`metadata.tags_for_reading`),
            their records concatenated in this order.
        downsample: Steps to ask for (`read_tensors`' `downsample`).
        width: The vectors' length.

    Returns:
        `(steps, values)`: int64 [T] in the order served and float32
        [T, width]; or None when this provider is not TensorBoard's gRPC
        one, or a datum is not a packed float32 vector of `width` (the
        caller then reads through `read_tensors`, which says what is wrong).

    Example:

    >>> steps, values = read_vectors(provider, "", "run1", ["gradwatch/metric/activation_var"], 20000, 12)
    """
    stub = getattr(data_provider, "_stub", None)
    if stub is None:
        return None
    try:
        from tensorboard.data import grpc_provider
        from tensorboard.data.proto import data_provider_pb2
    except ImportError:
        return None
    request = data_provider_pb2.ReadTensorsRequest(experiment_id=experiment)
    request.plugin_filter.plugin_name = metadata.PLUGIN_NAME
    request.run_tag_filter.runs.names.append(run)
    request.run_tag_filter.tags.names.extend(tags)
    request.downsample.num_points = downsample
    with grpc_provider._translate_grpc_error():
        response = stub.ReadTensors(request)
    by_tag = {
        tag_entry.tag_name: tag_entry.data
        for run_entry in response.runs
        if run_entry.run_name == run
        for tag_entry in run_entry.tags
    }
    data = [by_tag[tag] for tag in tags if tag in by_tag]
    tensors = [t for d in data for t in d.value]
    size = 4 * width
    if any(t.dtype != types_pb2.DT_FLOAT or len(t.tensor_content) != size for t in tensors):
        return None
    values = np.frombuffer(
        b"".join([t.tensor_content for t in tensors]), "<f4"
    ).reshape(len(tensors), width)
    steps = np.array([s for d in data for s in d.step], dtype=np.int64)
    return steps, values
