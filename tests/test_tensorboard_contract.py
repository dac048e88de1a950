"""What the plugin relies on in TensorBoard beyond its public plugin API,
checked against the installed TensorBoard so that an upgrade that changes it
fails here, loudly, rather than making the tab silently slower.

`vector_reads` asks TensorBoard's data server for a series through the data
provider's own gRPC stub (`GrpcDataProvider._stub`, with
`grpc_provider._translate_grpc_error`), and falls back to `read_tensors`
when that stub is missing: the fallback keeps the tab working, so only
these tests notice the fast path is gone.
"""

import time

import numpy as np
import pytest
from tensorboard.context import RequestContext
from tensorboard.data import grpc_provider, server_ingester
from tensorboard.util import grpc_util

from conftest import fit_and_load, mlp, rng
from gradwatch_tensorboard import metadata, vector_reads


def test_the_grpc_data_provider_keeps_its_stub():
    stub = object()
    provider = grpc_provider.GrpcDataProvider("localhost:0", stub)
    assert provider._stub is stub
    with pytest.raises(Exception):
        with grpc_provider._translate_grpc_error():
            raise ValueError("passes through")


@pytest.fixture
def data_server(tmp_path):
    """TensorBoard's own data server on `tmp_path`, as `tensorboard
    --load_fast` starts it, and its data provider."""
    binary = server_ingester.get_server_binary()
    if binary is None:
        pytest.skip("no tensorboard-data-server binary for this platform")
    ingester = server_ingester.SubprocessServerDataIngester(
        server_binary=binary, logdir=str(tmp_path), reload_interval=1,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
    )

    def start():
        ingester.start()
        return ingester.data_provider

    yield start
    handle = getattr(ingester, "_stdin_handle", None)
    if handle is not None:
        handle.close()  # The server dies after its stdin closes.


def test_series_are_read_through_the_stub_from_the_real_data_server(tmp_path, data_server):
    model = mlp(3, 8, "relu", "he_normal", learning_rate=0.01)
    x = rng(0).normal(size=(64, 8)).astype(np.float32)
    recorded = fit_and_load(model, x, x[:, :1], str(tmp_path / "run"), batch_size=8, update_freq=1)
    provider = data_server()
    tags = metadata.tags_for_reading(metadata.metric_tag("activation_var"))
    ctx = RequestContext()
    deadline = time.time() + 30
    read = None
    while time.time() < deadline:
        runs = [r.run_name for r in provider.list_runs(ctx, experiment_id="")]
        if "run" in runs:
            read = vector_reads.read_vectors(provider, "", "run", tags, 1000, len(recorded.layers))
            if read is not None and len(read[0]) == len(recorded.steps):
                break
        time.sleep(0.5)
    assert read is not None, "the fast path through the provider's stub is gone"
    steps, values = read
    order = np.argsort(steps)
    np.testing.assert_array_equal(steps[order], recorded.steps)
    np.testing.assert_array_equal(values[order], recorded.metric("activation_var"))
