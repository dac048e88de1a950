"""The plugin's routes through TensorBoard's own WSGI app and data provider."""

import argparse
import json
import subprocess
import sys
import time

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import werkzeug.test
from hypothesis import given, settings
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin

from gradwatch_tensorboard import loader, metadata
from gradwatch_tensorboard import plugin as plugin_module
from gradwatch_tensorboard.heatmap_body import downsample, pack_codes, to_json
from gradwatch_tensorboard.plugin import GradWatchPlugin
from gradwatch_tensorboard.summary import SummaryWriter
from heatmap_format import decode_binary_heatmap
from runs import HOSTILE_LAYERS, HOSTILE_RUN, write_gallery
from benchmarks.tensorboard_process import TensorBoardProcess

PREFIX = "/data/plugin/gradwatch/"
LONG_STEPS = 1500


@pytest.fixture(scope="module")
def log_root(tmp_path_factory):
    root = write_gallery(tmp_path_factory.mktemp("logs"))
    # A long run, written without TensorFlow: 1,500 recorded steps.
    writer = SummaryWriter(str(root / "long"), ["first", "second", "third"])
    for step in range(LONG_STEPS):
        writer.write_step(
            step * 3,
            {"activation_var": [1.0, float(step), np.nan], "dead_fraction": [0.0, (step % 10) / 10, np.nan]},
        )
    writer.close()
    return root


def make_client(log_root, logdir=True):
    """The plugin inside a real TensorBoard WSGI app, reading via a data provider
    sampled the way GradWatch's loader configures TensorBoard; without
    `logdir` its context names no log dir (as with `--logdir_spec`)."""
    flags = argparse.Namespace(samples_per_plugin={})
    loader.GradWatchLoader().fix_flags(flags)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance=flags.samples_per_plugin
    )
    multiplexer.AddRunsFromDirectory(str(log_root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(log_root))
    context = base_plugin.TBContext(logdir=str(log_root) if logdir else None, data_provider=provider)
    plugin = loader.GradWatchLoader().load(context)
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    client = werkzeug.test.Client(app, werkzeug.wrappers.Response)
    client.plugin, client.multiplexer = plugin, multiplexer
    return client


def client_counting_reads(log_root, logdir=True):
    """`(client, reads)`: a client whose data provider appends the tags of
    every `read_tensors` call to `reads`."""
    client = make_client(log_root, logdir)
    reads = []
    provider = client.plugin._data_provider
    read_tensors = provider.read_tensors
    provider.read_tensors = lambda *a, **k: reads.append(k["run_tag_filter"].tags) or read_tensors(*a, **k)
    return client, reads


def wait_for_reads(reads, count, timeout=30):
    """Waits until `reads` holds `count` calls, then a little longer, so
    that a call too many would show."""
    deadline = time.monotonic() + timeout
    while len(reads) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)


@pytest.fixture(scope="module")
def client(log_root):
    return make_client(log_root)


def get_json(client, path, **params):
    response = client.get(PREFIX + path, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def test_listing_names_runs_metrics_and_layers(client):
    body = get_json(client, "runs")
    runs = {r["run"]: r for r in body["runs"]}
    assert set(runs) == {"sigmoid", "relu", "long", HOSTILE_RUN}
    assert runs["sigmoid"]["layers"] == [f"dense_{i}" for i in range(8)] + ["head"]
    assert "gradient_var" in runs["sigmoid"]["metrics"]
    assert runs["long"]["last_step"] == (LONG_STEPS - 1) * 3
    assert runs[HOSTILE_RUN]["layers"] == HOSTILE_LAYERS
    assert body["metric_info"]["activation_var"]["scale"] == "log"


def test_hostile_names_round_trip_through_load(log_root):
    import gradwatch

    recorded = gradwatch.load(str(log_root / HOSTILE_RUN))
    assert recorded.layers == HOSTILE_LAYERS


def test_heatmap_holds_the_recorded_values(client, log_root):
    import gradwatch

    body = get_json(client, "heatmap", run="sigmoid", metric="gradient_var")
    recorded = gradwatch.load(str(log_root / "sigmoid"))
    assert body["steps"] == recorded.steps.tolist()
    assert body["layers"] == recorded.layers
    np.testing.assert_allclose(np.array(body["values"], dtype=float), recorded.metric("gradient_var"), rtol=1e-6)
    # The sigmoid's backward variance collapses toward the first layer.
    last = np.array(body["values"][-1], dtype=float)
    assert last[0] < last[7] * 1e-3


def test_not_applicable_cells_come_back_as_nan(client):
    body = get_json(client, "heatmap", run="relu", metric="saturation_fraction")
    assert all(v == "NaN" for row in body["values"] for v in row)


def test_every_step_of_a_long_run_reaches_the_heatmap(client):
    body = get_json(client, "heatmap", run="long", metric="activation_var", max_columns=5000)
    assert body["total_steps"] == LONG_STEPS
    assert body["steps"] == [s * 3 for s in range(LONG_STEPS)]
    assert [row[1] for row in body["values"]] == list(map(float, range(LONG_STEPS)))


@pytest.mark.parametrize(
    "start, end, steps",
    [
        (6, 12, [6, 9, 12]),  # recorded edges: exactly the range
        (4, 12, [3, 6, 9, 12]),  # 4 lies in step 3's column (3 to 6)
        (4, 5, [3]),  # between two recorded steps: the column over them
        (0, 2, [0]),
        ((LONG_STEPS - 1) * 3 + 1, (LONG_STEPS - 1) * 3 + 9, []),  # after the last
    ],
)
def test_a_step_range_starts_with_the_column_that_covers_it(client, start, end, steps):
    body = get_json(client, "heatmap", run="long", metric="activation_var", start_step=start, end_step=end)
    assert body["steps"] == steps
    assert body["range_steps"] == len(steps)
    assert [row[1] for row in body["values"]] == [float(s // 3) for s in steps]


def test_heatmap_downsamples_on_the_server(client):
    body = get_json(client, "heatmap", run="long", metric="dead_fraction", max_columns=100)
    assert len(body["steps"]) == 100
    # Fractions keep each column's worst value: every 15-step column holds a 0.9.
    assert all(row[1] == pytest.approx(0.9) for row in body["values"])
    assert body["step_ranges"][0] == [0, 14 * 3]
    assert body["step_ranges"][-1][1] == (LONG_STEPS - 1) * 3


def test_downsample_keeps_real_values_for_variances():
    steps = np.arange(10) * 2
    values = np.arange(20, dtype=float).reshape(10, 2)
    out_steps, ranges, out = downsample(steps, values, 5, "log")
    assert out_steps.tolist() == [2, 6, 10, 14, 18]
    assert ranges.tolist() == [[0, 2], [4, 6], [8, 10], [12, 14], [16, 18]]
    np.testing.assert_array_equal(out, values[1::2])


def test_profile_gives_every_metric_across_layers(client, log_root):
    import gradwatch

    recorded = gradwatch.load(str(log_root / "relu"))
    step = int(recorded.steps[3])
    body = get_json(client, "profile", run="relu", step=step)
    assert body["layers"] == recorded.layers
    assert set(body["metrics"]) == set(recorded.metrics)
    np.testing.assert_allclose(
        np.array(body["metrics"]["activation_var"], dtype=float), recorded.metric("activation_var")[3], rtol=1e-6
    )


@pytest.mark.parametrize("logdir, series_read", [(True, 0), (False, 2)])
def test_profile_reads_only_the_metrics_asked_for(log_root, logdir, series_read):
    """With a log dir the step is read from the event files (no series
    through TensorBoard); without one, only the two series asked for."""
    import gradwatch

    client, reads = client_counting_reads(log_root, logdir)
    recorded = gradwatch.load(str(log_root / "relu"))
    step = int(recorded.steps[2])
    body = get_json(client, "profile", run="relu", step=step, metrics="gradient_var,activation_var")
    assert list(body["metrics"]) == ["activation_var", "gradient_var"]
    assert body["layers"] == recorded.layers
    assert len(reads) == series_read
    for metric in body["metrics"]:
        np.testing.assert_array_equal(
            np.array(body["metrics"][metric], dtype=np.float32), recorded.metric(metric)[2]
        )


@pytest.mark.parametrize(
    "path, params, status",
    [
        ("heatmap", {"metric": "activation_var"}, 400),
        ("heatmap", {"run": "relu"}, 400),
        ("heatmap", {"run": "nope", "metric": "activation_var"}, 404),
        ("heatmap", {"run": "relu", "metric": "nope"}, 404),
        ("heatmap", {"run": "relu", "metric": "activation_var", "max_columns": "ten"}, 400),
        ("heatmap", {"run": "relu", "metric": "activation_var", "max_columns": "0"}, 400),
        ("heatmap", {"run": "relu", "metric": "activation_var", "max_columns": "9" * 40}, 400),
        ("heatmap", {"run": "r" * 10000, "metric": "activation_var"}, 400),
        ("profile", {"run": "relu"}, 400),
        ("profile", {"run": "relu", "step": "-1"}, 400),
        ("profile", {"run": "relu", "step": "1.5"}, 400),
        ("profile", {"run": "relu", "step": "999999"}, 404),
        ("profile", {"run": "nope", "step": "0"}, 404),
        ("profile", {"run": "relu", "step": "0", "metrics": ","}, 400),
        ("profile", {"run": "relu", "step": "0", "metrics": "activation_var,nope"}, 404),
        ("profile", {"run": "relu", "step": "0", "metrics": "m," * 3000}, 400),
    ],
)
def test_bad_parameters_are_plain_text_errors(client, path, params, status):
    response = client.get(PREFIX + path, query_string=params)
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True)


def test_static_route_serves_the_module(client):
    response = client.get(PREFIX + "static/index.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"export async function render" in response.get_data()


@pytest.mark.parametrize(
    "path",
    [
        "static/../plugin.py",
        "static/%2e%2e/plugin.py",
        "static/..%2fplugin.py",
        "static/..%5cplugin.py",
        "static/%2e%2e%2f%2e%2e%2fsetup.py",
        "static/",
        "static/.hidden",
        "static/nope.js",
        "static/%00index.js",
    ],
)
def test_static_route_refuses_path_traversal(client, path):
    response = client.get(PREFIX + path)
    assert response.status_code == 404
    assert b"metadata" not in response.get_data()


def test_frontend_metadata_points_at_the_module(log_root):
    plugin = GradWatchPlugin(base_plugin.TBContext(logdir=str(log_root)))
    frontend = plugin.frontend_metadata()
    assert frontend.es_module_path == "/static/index.js"
    assert frontend.tab_name == "GradWatch"


def test_loader_keeps_a_users_own_sampling_choice():
    flags = argparse.Namespace(samples_per_plugin={"gradwatch": 7})
    loader.GradWatchLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"gradwatch": 7}
    flags = argparse.Namespace(samples_per_plugin={"scalars": 5})
    loader.GradWatchLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"scalars": 5, "gradwatch": metadata.SAMPLES_PER_SERIES}


def test_loading_the_plugin_imports_no_tensorflow():
    code = (
        "import sys; import gradwatch_tensorboard.loader, gradwatch_tensorboard.plugin;"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stock_tensorboard_serves_every_step_of_a_long_run(log_root):
    """The real `tensorboard --logdir` (Rust data server), no extra flags."""
    with TensorBoardProcess(log_root) as tb:
        listing = tb.wait_for(lambda: json.loads(tb.get("data/plugins_listing")[1]).get("gradwatch"))
        assert listing["enabled"] and listing["tab_name"] == "GradWatch"

        def long_heatmap():
            status, body = tb.get(
                "data/plugin/gradwatch/heatmap?run=long&metric=activation_var&max_columns=5000"
            )
            return status == 200 and json.loads(body)

        def complete_heatmap():
            body = long_heatmap()
            return body if body and body["total_steps"] == LONG_STEPS else None

        body = tb.wait_for(complete_heatmap)
        assert body["steps"] == [s * 3 for s in range(LONG_STEPS)]
        status, text = tb.get("data/plugin/gradwatch/heatmap?run=long&metric=nope")
        assert status == 404 and b"nope" in text


def test_viewing_a_heatmap_reads_the_runs_other_metrics_ahead(log_root):
    # The depth profile needs every metric at one step; on a long run each
    # series takes about a second to read, so the first heatmap request
    # starts reading the rest in the background.
    client, reads = client_counting_reads(log_root)
    get_json(client, "heatmap", run="long", metric="activation_var")
    wait_for_reads(reads, 2)
    assert len(reads) == 2  # activation_var, then dead_fraction ahead of time
    profile = get_json(client, "profile", run="long", step=3 * 700)
    assert profile["metrics"]["dead_fraction"][1] == 0.0 and profile["metrics"]["activation_var"][1] == 700.0
    get_json(client, "heatmap", run="long", metric="dead_fraction")
    assert len(reads) == 2  # both answered from memory


def test_a_growing_run_is_read_ahead_once(tmp_path):
    # The page refreshes the shown heatmap every 5 s while a run grows: that
    # must not re-read every other series of the run each time.
    writer = SummaryWriter(str(tmp_path / "live"), ["a", "b"])
    metrics = ("activation_var", "gradient_var", "dead_fraction")
    for step in range(3):
        writer.write_step(step, {m: [1.0, 2.0] for m in metrics})
    client, reads = client_counting_reads(tmp_path)
    get_json(client, "heatmap", run="live", metric="activation_var")
    wait_for_reads(reads, len(metrics))
    assert len(reads) == len(metrics)
    writer.write_step(3, {m: [1.0, 2.0] for m in metrics})
    writer.close()
    client.multiplexer.Reload()
    body = get_json(client, "heatmap", run="live", metric="activation_var")
    assert body["steps"] == [0, 1, 2, 3]
    wait_for_reads(reads, len(metrics) + 2)
    assert len(reads) == len(metrics) + 1  # only the grown series shown


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)))
def test_float_arrays_round_trip_through_the_json_encoding(array):
    decoded = json.loads(to_json({"values": array}))["values"]
    as_float32 = np.array(decoded, dtype=np.float32).reshape(array.shape)
    np.testing.assert_array_equal(as_float32, array)  # NaN where NaN, +-inf too


# -- zoom by step range ------------------------------------------------------


def test_a_step_range_gives_exactly_its_recorded_steps(client):
    # "long" records every third step; [300, 600] holds steps 300, 303, ..., 600.
    body = get_json(client, "heatmap", run="long", metric="activation_var", start_step=300, end_step=600)
    assert body["steps"] == list(range(300, 601, 3))
    assert body["step_ranges"] == [[s, s] for s in range(300, 601, 3)]
    assert [row[1] for row in body["values"]] == [float(s // 3) for s in range(300, 601, 3)]
    assert body["range_steps"] == 101
    assert body["total_steps"] == LONG_STEPS
    assert (body["first_step"], body["last_step"]) == (0, (LONG_STEPS - 1) * 3)


def test_a_step_range_is_downsampled_to_its_columns(client):
    body = get_json(
        client, "heatmap", run="long", metric="dead_fraction", start_step=301, end_step=3000, max_columns=10
    )
    # From 300, whose column (300 to 303) covers 301.
    assert body["range_steps"] == len(range(300, 3001, 3))
    assert len(body["steps"]) == 10
    assert body["step_ranges"][0][0] == 300 and body["step_ranges"][-1][1] == 3000
    # Every column of 90 recorded steps holds a step whose value is 0.9.
    assert all(row[1] == pytest.approx(0.9) for row in body["values"])


def test_a_step_range_without_recorded_steps_is_empty(client):
    last = (LONG_STEPS - 1) * 3
    body = get_json(client, "heatmap", run="long", metric="activation_var", start_step=last + 1, end_step=last + 2)
    assert body["steps"] == [] and body["values"] == [] and body["range_steps"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"start_step": "10", "end_step": "9"},
        {"start_step": "-1"},
        {"end_step": "x"},
        {"format": "xml"},
        {"zoom": "1"},
    ],
)
def test_bad_step_ranges_and_formats_are_plain_text_errors(client, params):
    response = client.get(PREFIX + "heatmap", query_string={"run": "long", "metric": "activation_var", **params})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert next(iter(params)) in response.get_data(as_text=True)


# -- the binary heatmap --------------------------------------------------------


def get_binary(client, **params):
    response = client.get(PREFIX + "heatmap", query_string=dict(params, format="binary"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/octet-stream"
    return response.get_data()


@pytest.fixture(scope="module")
def special_values_root(tmp_path_factory):
    """Known values for every scale: NaN, +-Inf and 0 included."""
    root = tmp_path_factory.mktemp("special")
    writer = SummaryWriter(str(root / "special"), ["a", "b", "c", "d"])
    rng = np.random.default_rng(1)
    for step in range(50):
        writer.write_step(step, {
            # log scale: 14 decades, a zero, NaN and both infinities.
            "gradient_var": [10.0 ** rng.uniform(-12, 2), 0.0 if step % 7 == 0 else 1e-3, np.nan,
                             np.inf if step % 2 else -np.inf],
            # signed: negative and positive floats.
            "activation_mean": [rng.uniform(-3, 3), -1e-4, 0.0, np.nan],
            # counts: integers, exactly.
            "dead_units": [float(step % 9), 0.0, 4096.0, np.nan],
        })
    writer.close()
    return root


@pytest.mark.parametrize("metric", ["gradient_var", "activation_mean", "dead_units"])
def test_the_binary_heatmap_holds_the_json_values(special_values_root, metric):
    client = make_client(special_values_root)
    exact = get_json(client, "heatmap", run="special", metric=metric)
    header, values = decode_binary_heatmap(get_binary(client, run="special", metric=metric))
    assert header["step_ranges"] == exact["step_ranges"]
    assert header["layers"] == exact["layers"] == ["a", "b", "c", "d"]
    expected = np.array(exact["values"], dtype=float)
    # NaN, +Inf, -Inf and 0 exactly where they were.
    for special in (np.isnan, np.isposinf, np.isneginf, lambda v: v == 0):
        np.testing.assert_array_equal(special(values), special(expected))
    finite = np.isfinite(expected) & (expected != 0)
    enc = header["encoding"]
    if metric == "dead_units":
        assert enc["step"] == 1.0
        np.testing.assert_array_equal(values[finite], expected[finite])  # counts exactly
    elif metric == "gradient_var":
        assert enc["transform"] == "log10"
        error = np.abs(np.log10(values[finite]) - np.log10(expected[finite]))
        assert error.max() <= enc["step"] / 2 + 1e-12
        assert enc["bits"] == 14 and enc["step"] <= 14.1 / (2**14 - 6)  # 14 bits over the 14 decades recorded
    else:
        assert enc["transform"] == "linear"
        error = np.abs(values[finite] - expected[finite])
        near_zero = np.abs(expected[finite]) < enc["step"] / 2  # -1e-4 at 14 bits
        assert near_zero.any()
        assert error[~near_zero].max() <= enc["step"] / 2 + 1e-12
        # Near 0, one step away from it, on its side.
        assert error[near_zero].max() <= enc["step"] + 1e-12
        np.testing.assert_array_equal(np.sign(values[finite]), np.sign(expected[finite]))


def test_the_binary_heatmap_of_500_layers_by_1000_columns_fits_in_a_megabyte(tmp_path):
    names = [f"dense_{i}" for i in range(499)] + ["head"]
    writer = SummaryWriter(str(tmp_path / "wide"), names)
    rng = np.random.default_rng(0)
    for step in range(3000):
        writer.write_step(step, {"gradient_var": (10.0 ** rng.uniform(-12, 2, 500)).astype(np.float32)})
    writer.close()
    client = make_client(tmp_path)
    data = get_binary(client, run="wide", metric="gradient_var", max_columns=1000)
    header, values = decode_binary_heatmap(data)
    assert values.shape == (1000, 500)
    assert len(data) <= 1_000_000
    json_size = len(client.get(PREFIX + "heatmap", query_string={"run": "wide", "metric": "gradient_var"}).get_data())
    assert json_size > 5 * len(data)


# -- sampling --------------------------------------------------------------------


@pytest.mark.parametrize(
    "hints, samples",
    [
        ({}, metadata.SAMPLES_PER_SERIES),
        (None, metadata.SAMPLES_PER_SERIES),
        ({"gradwatch": 50_000}, 50_000),
        ({"gradwatch": 7}, 7),
        ({"gradwatch": 0}, plugin_module.ALL_SAMPLES),
        ({"scalars": 5}, metadata.SAMPLES_PER_SERIES),
    ],
)
def test_the_plugin_reads_as_many_steps_as_tensorboard_keeps(hints, samples):
    assert plugin_module.samples_per_series(hints) == samples


def test_a_sampling_hint_reaches_the_data_provider(log_root):
    flags = argparse.Namespace(samples_per_plugin={"gradwatch": 40})
    client = make_client(log_root)
    plugin = GradWatchPlugin(base_plugin.TBContext(
        logdir=str(log_root), data_provider=client.plugin._data_provider, sampling_hints=flags.samples_per_plugin
    ))
    app = application.TensorBoardWSGI([plugin], data_provider=client.plugin._data_provider)
    sampled = werkzeug.test.Client(app, werkzeug.wrappers.Response)
    body = get_json(sampled, "heatmap", run="long", metric="activation_var", max_columns=5000)
    assert len(body["steps"]) == 40 and body["steps"][-1] == (LONG_STEPS - 1) * 3


def test_codes_pack_into_a_little_endian_bit_stream():
    codes = np.array([0x3FFF, 1, 0x2AAA, 5], dtype=np.uint16)
    # The stream as one integer: code i at bit 14 * i.
    def stream(codes):
        return sum(int(c) << (14 * i) for i, c in enumerate(codes))

    assert pack_codes(codes, 14) == stream(codes).to_bytes(7, "little")
    assert pack_codes(codes[:3], 14) == stream(codes[:3]).to_bytes(6, "little")  # 42 bits, padded
    assert pack_codes(codes, 16) == codes.astype("<u2").tobytes()
