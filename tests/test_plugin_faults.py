"""Damaged, empty and growing log directories, served through TensorBoard.

Every route (`runs`, `heatmap`, `profile`, `findings`) goes through TensorBoard's
own WSGI app and a real data provider: the Python `EventMultiplexer` reloaded on
demand, and once the stock `tensorboard` binary (Rust data server). What must
hold: data recorded before the damage is served with its exact values; a run
without GradWatch data is left out of `runs` and every other route answers 404
in plain text; nothing answers 500; a run being written is never served half a
step, and never shrinks from one poll to the next.

Data is written with `SummaryWriter` and a known value per cell (`value`), so
any served cell can be checked exactly; one test uses a real `model.fit`.
"""

import argparse
import json
import os
import random
import shutil
import struct
import threading
import time

import numpy as np
import pytest
import werkzeug.test
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins import base_plugin
from tensorboard.util import tensor_util

from gradwatch_tensorboard import loader, metadata
from gradwatch_tensorboard.summary import SummaryWriter
from benchmarks.tensorboard_process import TensorBoardProcess
from heatmap_format import decode_binary_heatmap

PREFIX = "/data/plugin/gradwatch/"
LAYERS = ["input_proj", "hidden_0", "hidden_1", "head"]
# A "log" metric (downsampling keeps the column's last value) and a "fraction"
# (downsampling keeps the column's max): both paths of `downsample`.
METRICS = ("activation_var", "dead_fraction")
STEPS = list(range(12))
DAMAGED_STEP = 6  # The step whose record each damaged file loses or breaks.
PREFIX_STEPS = STEPS[:DAMAGED_STEP]
FINDINGS_AT = (3, 11)  # Findings documents: one before the damage, one after.


def value(metric, step, layer):
    """The value written for one cell: exact in float32, known everywhere."""
    if metric == "activation_var":
        return step * 16 + layer + 0.25  # distinct in every cell
    return ((3 * step + layer) % 9) / 8  # a fraction, in eighths


def expected(metric, steps, num_layers=len(LAYERS)):
    return np.array([[value(metric, s, l) for l in range(num_layers)] for s in steps], dtype=np.float64).reshape(
        len(steps), num_layers
    )


def step_metrics(step):
    return {m: [value(m, step, l) for l in range(len(LAYERS))] for m in METRICS}


def findings_document(step):
    return {
        "version": 1, "step": step, "final": False,
        "findings": [{
            "rule": "dying_units", "severity": "warning", "layers": ["hidden_0"],
            "first_step": 0, "last_step": step, "ongoing": True, "metric": "dead_fraction",
            "message": f"written at step {step}", "remedy": "lower the learning rate",
        }],
    }


def write_run(run_dir, steps=STEPS, findings_at=FINDINGS_AT):
    """A GradWatch run with known values; returns its event file's path."""
    os.makedirs(run_dir, exist_ok=True)
    before = set(os.listdir(run_dir))
    writer = SummaryWriter(str(run_dir), LAYERS)
    for step in steps:
        writer.write_step(step, step_metrics(step))
        if step in findings_at:
            writer.write_document(step, metadata.FINDINGS_TAG, findings_document(step), kind="findings")
    writer.close()
    (name,) = set(os.listdir(run_dir)) - before
    return os.path.join(run_dir, name)


# -- the TFRecord framing of event files -------------------------------------


def frame(payload):
    """One TFRecord: length, its masked CRC-32C, payload, the payload's CRC."""
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def read_records(path):
    """`(data, [(offset, size, Event)])` of an intact event file."""
    with open(path, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        size = 12 + length + 4
        records.append((offset, size, event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])))
        offset += size
    assert offset == len(data)
    return data, records


def step_record(records, step):
    """`(offset, size, event)` of the record holding GradWatch metrics of `step`."""
    (found,) = [
        r for r in records
        if r[2].step == step and any(v.tag.startswith(metadata.TAG_PREFIX) for v in r[2].summary.value)
    ]
    return found


def is_findings(event):
    return len(event.summary.value) == 1 and event.summary.value[0].tag == metadata.FINDINGS_TAG


def rewrite(path, data):
    with open(path, "wb") as f:
        f.write(data)


def flip(data, index, mask=0xFF):
    damaged = bytearray(data)
    damaged[index] ^= mask
    return bytes(damaged)


# -- serving -------------------------------------------------------------------


class Served:
    """A log dir served by the plugin inside TensorBoard's WSGI app, through the
    Python data provider sampled as GradWatch's loader configures it.

    `reload()` does what TensorBoard's reload thread does every
    `--reload_interval`: find new runs, then read what the files gained.
    """

    def __init__(self, root):
        self.root = str(root)
        flags = argparse.Namespace(samples_per_plugin={})
        loader.GradWatchLoader().fix_flags(flags)
        self.multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance=flags.samples_per_plugin)
        provider = data_provider.MultiplexerDataProvider(self.multiplexer, self.root)
        context = base_plugin.TBContext(logdir=self.root, data_provider=provider)
        app = application.TensorBoardWSGI([loader.GradWatchLoader().load(context)], data_provider=provider)
        self.client = werkzeug.test.Client(app, werkzeug.wrappers.Response)
        self.reload()

    def reload(self):
        self.multiplexer.AddRunsFromDirectory(self.root)
        self.multiplexer.Reload()

    def get(self, route, **params):
        return self.client.get(PREFIX + route, query_string=params)

    def json(self, route, **params):
        response = self.get(route, **params)
        assert response.status_code == 200, (route, params, response.status_code, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
        return json.loads(response.get_data(as_text=True))

    def runs(self):
        return {r["run"]: r for r in self.json("runs")["runs"]}


def assert_plain_error(response, status, *needles):
    text = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, text)
    assert response.mimetype == "text/plain", response.mimetype
    for needle in needles:
        assert needle in text, (needle, text)


def as_array(rows, num_layers=len(LAYERS)):
    """JSON rows (NaN spelled "NaN", as TensorBoard does) as a float32 array:
    the plugin writes each value in the shortest text that round-trips the
    float32 the callback recorded."""
    return np.array(rows, dtype=np.float32).reshape(len(rows), num_layers)


def assert_heatmap_exact(body, run, metric, steps, layers=LAYERS, values=None):
    values = expected(metric, steps, len(layers)) if values is None else values
    assert body["run"] == run and body["metric"] == metric
    assert body["layers"] == layers
    assert body["total_steps"] == len(steps)
    assert body["steps"] == list(steps)
    assert body["step_ranges"] == [[s, s] for s in steps]
    np.testing.assert_array_equal(as_array(body["values"], len(layers)), values)


def assert_serves_exactly(served, run, steps, findings_step, lost_steps=()):
    """Every route of `run` serves exactly `steps` (and nothing of `lost_steps`)."""
    listed = served.runs()[run]
    assert listed == {"run": run, "layers": LAYERS, "metrics": list(METRICS), "last_step": steps[-1],
                      "distributions": []}
    for metric in METRICS:
        body = served.json("heatmap", run=run, metric=metric, max_columns=5000)
        assert_heatmap_exact(body, run, metric, steps)
        # All steps in one column: a fraction keeps the worst (max) value,
        # a variance the value at the column's last step.
        body = served.json("heatmap", run=run, metric=metric, max_columns=1)
        assert body["steps"] == [steps[-1]] and body["step_ranges"] == [[steps[0], steps[-1]]]
        column = expected(metric, steps).max(axis=0) if metric == "dead_fraction" else expected(metric, steps)[-1]
        np.testing.assert_array_equal(as_array(body["values"]), column[None])
    for step in steps:
        body = served.json("profile", run=run, step=step)
        assert body["layers"] == LAYERS and body["step"] == step
        assert set(body["metrics"]) == set(METRICS)
        for metric in METRICS:
            np.testing.assert_array_equal(np.array(body["metrics"][metric], dtype=float), expected(metric, [step])[0])
    for step in lost_steps:
        assert_plain_error(served.get("profile", run=run, step=step), 404, f"no recorded step {step}")
    body = served.json("findings", run=run)
    if findings_step is None:
        assert body == {"run": run, "available": False, "step": None, "final": False, "findings": []}
    else:
        assert body["available"] is True and body["step"] == findings_step
        assert [f["message"] for f in body["findings"]] == [f"written at step {findings_step}"]


# -- the damaged and empty runs ------------------------------------------------

# run -> (steps served, step of the findings document served), Python provider.
DAMAGED = {
    "intact": (STEPS, 11),
    "truncated_in_length": (PREFIX_STEPS, 3),
    "truncated_in_payload": (PREFIX_STEPS, 3),
    "truncated_in_crc": (PREFIX_STEPS, 3),
    "garbage_appended": (STEPS, 11),
    "bad_data_crc": (PREFIX_STEPS, 3),
    "bad_length_crc": (PREFIX_STEPS, 3),
    "bad_payload_byte": (PREFIX_STEPS, 3),
    # A crash left a torn file; the resumed run wrote a new file.
    "truncated_then_resumed": (PREFIX_STEPS + [20, 21, 22], 22),
}
EMPTY = ["empty_dir", "zero_byte_file", "no_step_yet", "torn_first_step", "garbage_only", "scalars_only"]
GARBAGE = bytes(range(256)) * 3 + b"\x00" * 40  # deterministic junk, no valid framing


def write_damaged_runs(root):
    """Each GradWatch run of `DAMAGED`, damaged as its name says."""
    for run in DAMAGED:
        path = write_run(root / run)
        data, records = read_records(path)
        offset, size, _ = step_record(records, DAMAGED_STEP)
        if run == "truncated_in_length":
            rewrite(path, data[:offset + 5])
        elif run == "truncated_in_payload":
            rewrite(path, data[:offset + size // 2])
        elif run == "truncated_in_crc":
            rewrite(path, data[:offset + size - 2])
        elif run == "garbage_appended":
            rewrite(path, data + GARBAGE)
        elif run == "bad_data_crc":
            rewrite(path, flip(data, offset + size - 1))
        elif run == "bad_length_crc":
            rewrite(path, flip(data, offset + 9))
        elif run == "bad_payload_byte":
            # One bit of one value: only the record's CRC tells.
            payload = data[offset + 12:offset + size - 4]
            cell = np.float32(value("activation_var", DAMAGED_STEP, 1)).tobytes()
            assert payload.count(cell) == 1
            rewrite(path, flip(data, offset + 12 + payload.index(cell) + 3, 0x01))
        elif run == "truncated_then_resumed":
            rewrite(path, data[:offset + size // 2])
            os.rename(path, root / run / "events.out.tfevents.0000000001.crashed")
            later = write_run(root / run, steps=[20, 21, 22], findings_at=(22,))
            os.rename(later, root / run / "events.out.tfevents.0000000002.resumed")


def write_empty_runs(root):
    """Run directories without a GradWatch step TensorBoard could read."""
    os.makedirs(root / "empty_dir")
    os.makedirs(root / "zero_byte_file")
    rewrite(root / "zero_byte_file" / "events.out.tfevents.0000000001.zero", b"")
    # The writer is open but no step is written yet: only the file version.
    SummaryWriter(str(root / "no_step_yet"), LAYERS).close()
    path = write_run(root / "torn_first_step", findings_at=())
    data, records = read_records(path)
    offset, size, _ = step_record(records, STEPS[0])
    rewrite(path, data[:offset + size - 1])
    os.makedirs(root / "garbage_only")
    rewrite(root / "garbage_only" / "events.out.tfevents.0000000001.junk", GARBAGE)
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(root / "scalars_only"))
    with writer.as_default():
        for step in range(5):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
    writer.close()


@pytest.fixture(scope="module")
def damaged_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    write_damaged_runs(root)
    write_empty_runs(root)
    # A GradWatch run of zero layers: the writer accepts it.
    writer = SummaryWriter(str(root / "zero_layers"), [])
    writer.write_step(0, {m: [] for m in METRICS})
    writer.close()
    return root


@pytest.fixture(scope="module")
def served(damaged_root):
    return Served(damaged_root)


def test_runs_lists_exactly_the_runs_with_gradwatch_steps(served, damaged_root):
    assert set(os.listdir(damaged_root)) == set(DAMAGED) | set(EMPTY) | {"zero_layers"}
    assert set(served.runs()) == set(DAMAGED) | {"zero_layers"}


@pytest.mark.parametrize("run", sorted(DAMAGED))
def test_a_damaged_file_serves_its_intact_records_exactly(served, run):
    steps, findings_step = DAMAGED[run]
    lost = sorted(set(STEPS) - set(steps))
    assert_serves_exactly(served, run, steps, findings_step, lost)


@pytest.mark.parametrize("run", EMPTY + ["no_such_run"])
def test_a_run_without_gradwatch_steps_is_a_plain_404_on_every_route(served, run):
    reason = f"No GradWatch data for run {run!r}"
    for metric in METRICS:
        assert_plain_error(served.get("heatmap", run=run, metric=metric), 404, reason)
    assert_plain_error(served.get("profile", run=run, step=0), 404, reason)
    assert_plain_error(served.get("findings", run=run), 404, reason)


def test_a_run_of_zero_layers_is_served_as_empty_vectors(served):
    run = "zero_layers"
    assert served.runs()[run] == {"run": run, "layers": [], "metrics": list(METRICS), "last_step": 0,
                                   "distributions": []}
    for metric in METRICS:
        for max_columns in (1, 5000):
            body = served.json("heatmap", run=run, metric=metric, max_columns=max_columns)
            assert body == {"run": run, "metric": metric, "layers": [], "total_steps": 1, "steps": [0],
                            "step_ranges": [[0, 0]], "values": [[]], "first_step": 0, "last_step": 0,
                            "range_steps": 1}
            binary = served.get("heatmap", run=run, metric=metric, max_columns=max_columns, format="binary")
            header, values = decode_binary_heatmap(binary.get_data())
            assert header["step_ranges"] == [[0, 0]] and header["columns"] == 1 and values.shape == (1, 0)
    assert served.json("profile", run=run, step=0) == {
        "run": run, "step": 0, "layers": [], "metrics": {m: [] for m in METRICS}}
    assert_plain_error(served.get("profile", run=run, step=1), 404, "no recorded step 1")
    assert served.json("findings", run=run)["available"] is False


# -- records that frame correctly but hold a damaged tensor --------------------
#
# TensorBoard's default (Rust) data server checksums a record only when it
# fails to parse (`--no-checksum`), so a flipped bit in a tensor's dtype or
# shape reaches the plugin. Written here with a valid CRC, the Python provider
# passes them on the same way.


def damage_tensor(event, how):
    tensor = event.summary.value[0].tensor  # gradwatch/activation_var
    assert event.summary.value[0].tag == metadata.metric_tag("activation_var")
    if how == "dtype":
        tensor.dtype = 0  # DT_INVALID
    elif how == "shape":
        tensor.tensor_shape.dim[0].size = len(LAYERS) + 1
    elif how == "strings":
        tensor.CopyFrom(tensor_util.make_tensor_proto(np.array([b"x"] * len(LAYERS), dtype=object)))


@pytest.fixture(scope="module")
def tensor_damage(tmp_path_factory):
    root = tmp_path_factory.mktemp("tensor_damage")
    for how in ("dtype", "shape", "strings"):
        path = write_run(root / how)
        data, records = read_records(path)
        offset, size, event = step_record(records, DAMAGED_STEP)
        damage_tensor(event, how)
        rewrite(path, data[:offset] + frame(event.SerializeToString()) + data[offset + size:])
    path = write_run(root / "bad_findings")
    data, records = read_records(path)
    ((offset, size, event),) = [r for r in records if is_findings(r[2]) and r[2].step == FINDINGS_AT[0]]
    event.summary.value[0].tensor.dtype = 0  # DT_INVALID
    rewrite(path, data[:offset] + frame(event.SerializeToString()) + data[offset + size:])
    return Served(root)


@pytest.mark.parametrize("how", ["dtype", "shape"])
def test_an_unreadable_tensor_is_a_plain_400_for_its_metric_only(tensor_damage, how):
    served = tensor_damage
    assert served.runs()[how]["layers"] == LAYERS
    assert_plain_error(
        served.get("heatmap", run=how, metric="activation_var"), 400, f"Run {how!r}, metric 'activation_var'", "damaged"
    )
    body = served.json("heatmap", run=how, metric="dead_fraction", max_columns=5000)
    assert_heatmap_exact(body, how, "dead_fraction", STEPS)
    # The profile reads one step's record: the other steps are intact, and the
    # damaged one loses only its damaged metric.
    body = served.json("profile", run=how, step=0)
    for metric in METRICS:
        np.testing.assert_array_equal(np.array(body["metrics"][metric], dtype=float), expected(metric, [0])[0])
    assert list(served.json("profile", run=how, step=DAMAGED_STEP)["metrics"]) == ["dead_fraction"]
    assert served.json("findings", run=how)["step"] == 11


def test_a_non_numeric_tensor_loses_only_its_own_step(tensor_damage):
    served, run = tensor_damage, "strings"
    kept = [s for s in STEPS if s != DAMAGED_STEP]
    assert_heatmap_exact(served.json("heatmap", run=run, metric="activation_var", max_columns=5000),
                         run, "activation_var", kept)
    assert_heatmap_exact(served.json("heatmap", run=run, metric="dead_fraction", max_columns=5000),
                         run, "dead_fraction", STEPS)
    body = served.json("profile", run=run, step=DAMAGED_STEP)
    assert list(body["metrics"]) == ["dead_fraction"]


def test_an_unreadable_findings_document_is_a_plain_400(tensor_damage):
    served, run = tensor_damage, "bad_findings"
    assert_plain_error(served.get("findings", run=run), 400, f"Run {run!r}, findings document", "damaged")
    for metric in METRICS:
        assert_heatmap_exact(served.json("heatmap", run=run, metric=metric, max_columns=5000), run, metric, STEPS)


# -- a real training run ------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_fit_is_served_up_to_its_last_step(tmp_path, error):
    # KeyboardInterrupt, or another callback raising, in the middle of an
    # epoch: what GradWatch recorded is on disk for TensorBoard, exactly.
    import keras

    import gradwatch
    from conftest import raise_at
    from runs import trained_mlp

    keras.utils.set_random_seed(2)
    run_dir = tmp_path / "logs" / "interrupted"
    x = np.random.default_rng(0).normal(size=(320, 8)).astype(np.float32)
    with pytest.raises(error):
        trained_mlp(2, "tanh", "glorot_uniform", width=8).fit(
            x, x[:, :1], batch_size=16, verbose=0,
            callbacks=[gradwatch.GradWatch(str(run_dir), update_freq=1, verbose=0), raise_at(4, error)])
    recorded = gradwatch.load(str(run_dir))
    np.testing.assert_array_equal(recorded.steps, np.arange(5))
    served = Served(tmp_path / "logs")
    assert served.runs()["interrupted"]["last_step"] == 4
    for metric in ("activation_var", "gradient_var", "saturation_fraction"):
        body = served.json("heatmap", run="interrupted", metric=metric)
        assert body["steps"] == list(range(5))
        np.testing.assert_array_equal(as_array(body["values"], len(recorded.layers)), recorded.metric(metric))


def test_a_truncated_model_fit_run_keeps_its_recorded_steps_exactly(tmp_path):
    import keras

    import gradwatch
    from runs import trained_mlp, train

    keras.utils.set_random_seed(1)
    run_dir = tmp_path / "logs" / "fit"
    train(trained_mlp(3, "relu", "he_normal", width=8), str(run_dir), steps=10, update_freq=1)
    recorded = gradwatch.load(str(run_dir))
    assert len(recorded.steps) == 10
    (name,) = os.listdir(run_dir)
    path = run_dir / name
    data, records = read_records(path)
    cut_step = int(recorded.steps[6])
    offset, size, _ = step_record(records, cut_step)
    rewrite(path, data[:offset + size // 2])
    kept = recorded.steps[recorded.steps < cut_step].tolist()
    assert kept == recorded.steps[:6].tolist()
    # The findings document the callback wrote last before the cut, if any.
    documents = [
        json.loads(tensor_util.make_ndarray(event.summary.value[0].tensor).reshape(-1)[0])
        for start, _, event in records
        if start < offset and is_findings(event)
    ]

    served = Served(tmp_path / "logs")
    listed = served.runs()["fit"]
    assert listed["layers"] == recorded.layers and listed["last_step"] == kept[-1]
    assert set(listed["metrics"]) == set(recorded.metrics)
    for metric in recorded.metrics:
        body = served.json("heatmap", run="fit", metric=metric, max_columns=5000)
        assert body["steps"] == kept and body["layers"] == recorded.layers
        np.testing.assert_array_equal(as_array(body["values"], len(recorded.layers)),
                                      recorded.metric(metric)[:len(kept)])
    for row, step in enumerate(kept):
        body = served.json("profile", run="fit", step=step)
        assert set(body["metrics"]) == set(recorded.metrics)
        for metric in recorded.metrics:
            np.testing.assert_array_equal(np.array(body["metrics"][metric], dtype=np.float32), recorded.metric(metric)[row])
    assert_plain_error(served.get("profile", run="fit", step=cut_step), 404, f"no recorded step {cut_step}")
    body = served.json("findings", run="fit")
    if documents:
        assert body["available"] and body["step"] == documents[-1]["step"]
        assert len(body["findings"]) == len(documents[-1]["findings"])
    else:
        assert body["available"] is False


# -- a log dir being written ---------------------------------------------------


class Observer:
    """Checks each poll of a run being written against what was written.

    Steps are written in order 0, 1, 2, ..., so a consistent response holds
    exactly the first n steps, every cell equal to `value`, and n never shrinks.
    """

    def __init__(self, runs):
        self.counts = {(run, m): 0 for run in runs for m in METRICS}
        self.seen = {run: set() for run in runs}

    def check_runs(self, listing):
        for run in self.seen:
            if run in listing:
                assert listing[run]["layers"] == LAYERS, listing[run]
                assert listing[run]["metrics"] == list(METRICS), listing[run]

    def check_heatmap(self, run, metric, status, body):
        if status == 404:
            assert "No GradWatch data" in body, body
            count = 0
        else:
            assert status == 200, (status, body)
            body = json.loads(body)
            count = len(body["steps"])
            assert_heatmap_exact(body, run, metric, list(range(count)))
        assert count >= self.counts[run, metric], (run, metric, count, self.counts[run, metric])
        self.counts[run, metric] = count
        self.seen[run].add(count)
        return count


def test_a_run_is_listed_exactly_when_its_first_step_is_complete(tmp_path):
    """The first record is appended a byte at a time; reload after each."""
    source = write_run(tmp_path / "source", steps=range(3), findings_at=())
    data, records = read_records(source)
    first_end = sum(size for offset, size, _ in records[:2])  # file version, step 0
    assert records[1][2].step == 0
    (tmp_path / "logs" / "live").mkdir(parents=True)
    path = tmp_path / "logs" / "live" / os.path.basename(source)
    served = Served(tmp_path / "logs")
    cuts = list(range(1, first_end + 2)) + list(range(first_end + 2, len(data) + 1, 7)) + [len(data)]
    with open(path, "wb") as f:
        written = 0
        for cut in cuts:
            f.write(data[written:cut])
            f.flush()
            written = cut
            served.reload()
            listing = served.runs()
            complete = [r[2].step for r in records[1:] if r[0] + r[1] <= cut]
            if not complete:
                assert "live" not in listing, cut
                for metric in METRICS:
                    assert_plain_error(served.get("heatmap", run="live", metric=metric), 404, "No GradWatch data")
                assert_plain_error(served.get("findings", run="live"), 404, "No GradWatch data")
                continue
            assert listing["live"] == {"run": "live", "layers": LAYERS, "metrics": list(METRICS),
                                       "last_step": complete[-1], "distributions": []}, cut
            for metric in METRICS:
                body = served.json("heatmap", run="live", metric=metric, max_columns=5000)
                assert_heatmap_exact(body, "live", metric, complete)
            assert set(served.json("profile", run="live", step=complete[-1])["metrics"]) == set(METRICS)
            assert served.json("findings", run="live")["available"] is False


def test_a_run_being_written_is_served_consistently_while_tensorboard_reloads(tmp_path):
    """Two writers and TensorBoard's reload loop run while the test polls.

    `live` is written by `SummaryWriter`, as the callback writes; `torn` gets
    the bytes of a finished file in random slices, so reloads land inside
    records, the first one included.
    """
    total = 200
    source = write_run(tmp_path / "source", steps=range(total), findings_at=())
    with open(source, "rb") as f:
        data = f.read()
    root = tmp_path / "logs"
    root.mkdir()
    served = Served(root)
    stop = threading.Event()
    failures = []

    def guarded(target):
        def run():
            try:
                target()
            except BaseException as e:  # reported by the main thread
                failures.append(e)
        return threading.Thread(target=run, daemon=True)

    def write_live():
        writer = SummaryWriter(str(root / "live"), LAYERS)
        time.sleep(0.05)  # the file holds only its version record for a while
        for step in range(total):
            writer.write_step(step, step_metrics(step))
            time.sleep(0.004)
        writer.close()

    def write_torn():
        (root / "torn").mkdir()
        rng = random.Random(0)
        with open(root / "torn" / os.path.basename(source), "wb") as f:
            offset = 0
            while offset < len(data):
                size = rng.randint(1, 90)
                f.write(data[offset:offset + size])
                f.flush()
                offset += size
                time.sleep(0.002)

    def reload_loop():
        while not stop.is_set():
            served.reload()
            time.sleep(0.005)

    writers = [guarded(write_live), guarded(write_torn)]
    reloader = guarded(reload_loop)
    observer = Observer(["live", "torn"])
    for thread in writers + [reloader]:
        thread.start()
    polls = 0
    try:
        while any(t.is_alive() for t in writers) and not failures:
            observer.check_runs(served.runs())
            for run in ("live", "torn"):
                for metric in METRICS:
                    response = served.get("heatmap", run=run, metric=metric, max_columns=5000)
                    count = observer.check_heatmap(run, metric, response.status_code, response.get_data(as_text=True))
                if count:
                    # A profile of a step already served: every metric served
                    # for it holds the exact values. (Not "every metric": the
                    # Python multiplexer adds an event's values one tag at a
                    # time, so a read racing a reload can see one metric of
                    # the newest step before the other.)
                    body = served.json("profile", run=run, step=count - 1)
                    for metric, row in body["metrics"].items():
                        np.testing.assert_array_equal(np.array(row, dtype=float), expected(metric, [count - 1])[0])
            polls += 1
    finally:
        stop.set()
        for thread in writers + [reloader]:
            thread.join(timeout=30)
    assert not failures, failures
    served.reload()
    for run in ("live", "torn"):
        assert_serves_exactly(served, run, list(range(total)), None)
        # The polls saw the run grow, not just its start and its end.
        partial = {n for n in observer.seen[run] if 0 < n < total}
        assert len(partial) >= 2, (run, sorted(observer.seen[run]), polls)


# -- the stock `tensorboard` binary ---------------------------------------------


def test_stock_tensorboard_serves_damaged_and_growing_runs(damaged_root, tmp_path):
    """The real `tensorboard --logdir` (Rust data server, `--reload_interval 1`)
    on the damaged runs, plus one with a flipped dtype bit and one being
    written while the test polls."""
    root = tmp_path / "logs"
    shutil.copytree(damaged_root, root)
    # One bit of the dtype of a tensor, CRC left as is: the data server parses
    # the record without checksumming it.
    path = write_run(root / "flipped_dtype")
    data, records = read_records(path)
    offset, size, event = step_record(records, DAMAGED_STEP)
    tensor = event.summary.value[0].tensor.SerializeToString()
    payload = data[offset + 12:offset + size - 4]
    assert payload.count(tensor) == 1 and tensor[:2] == b"\x08\x01"  # dtype: DT_FLOAT
    rewrite(path, flip(data, offset + 12 + payload.index(tensor) + 1, 0x01))

    total = 120
    observer = Observer(["live"])
    failures = []

    def write_live():
        try:
            writer = SummaryWriter(str(root / "live"), LAYERS)
            time.sleep(1.2)  # a reload sees the file before its first step
            for step in range(total):
                writer.write_step(step, step_metrics(step))
                time.sleep(0.03)
            writer.close()
        except BaseException as e:
            failures.append(e)

    with TensorBoardProcess(root) as tb:

        def get(path):
            status, body = tb.get("data/plugin/gradwatch/" + path)
            assert status != 500, (path, body)
            return status, body.decode("utf-8")

        def get_json(path):
            status, body = get(path)
            assert status == 200, (path, status, body)
            return json.loads(body)

        def check_damaged(run):
            steps, findings_step = DAMAGED[run]
            for metric in METRICS:
                body = get_json(f"heatmap?run={run}&metric={metric}&max_columns=5000")
                values = expected(metric, steps)
                if run in ("bad_data_crc", "bad_payload_byte") and body["steps"] == STEPS:
                    # By default the data server checksums only records that
                    # fail to parse, so it reads on past a bad data CRC: the
                    # records after it are intact, and so is the damaged one
                    # but for its flipped bit. Every intact cell is exact.
                    steps, findings_step, values = STEPS, 11, expected(metric, STEPS)
                    if run == "bad_payload_byte" and metric == "activation_var":
                        values[DAMAGED_STEP, 1] = as_array(body["values"])[DAMAGED_STEP, 1]
                assert_heatmap_exact(body, run, metric, steps, values=values)
            assert set(get_json(f"profile?run={run}&step={steps[-1]}")["metrics"]) == set(METRICS)
            assert get_json(f"findings?run={run}")["step"] == findings_step

        def check_empty(run):
            for path in (f"heatmap?run={run}&metric=activation_var", f"profile?run={run}&step=0",
                         f"findings?run={run}"):
                status, body = get(path)
                assert status == 404 and f"No GradWatch data for run {run!r}" in body, (path, status, body)

        def check_tensor_damage():
            status, body = get("heatmap?run=flipped_dtype&metric=activation_var")
            assert status == 400 and "damaged record" in body, (status, body)
            assert_heatmap_exact(get_json("heatmap?run=flipped_dtype&metric=dead_fraction&max_columns=5000"),
                                 "flipped_dtype", "dead_fraction", STEPS)
            # The profile reads step 0's own record, which is intact.
            assert set(get_json("profile?run=flipped_dtype&step=0")["metrics"]) == set(METRICS)
            assert get_json("findings?run=flipped_dtype")["step"] == 11
            body = get_json("heatmap?run=zero_layers&metric=dead_fraction&max_columns=1")
            assert (body["layers"], body["values"]) == ([], [[]])

        # The damaged runs are checked one per poll of the growing run.
        pending = [lambda run=run: check_damaged(run) for run in DAMAGED]
        pending += [lambda run=run: check_empty(run) for run in EMPTY] + [check_tensor_damage]
        writer = threading.Thread(target=write_live, daemon=True)
        writer.start()
        deadline = time.time() + 40
        while time.time() < deadline and not failures:
            listing = {r["run"]: r for r in get_json("runs")["runs"]}
            observer.check_runs(listing)
            counts = []
            for metric in METRICS:
                status, body = get(f"heatmap?run=live&metric={metric}&max_columns=5000")
                counts.append(observer.check_heatmap("live", metric, status, body))
            if pending and set(DAMAGED) | {"zero_layers", "flipped_dtype"} <= set(listing):
                assert set(listing) - {"live"} == set(DAMAGED) | {"zero_layers", "flipped_dtype"}
                pending.pop(0)()
            elif not pending and not writer.is_alive() and min(counts) == total:
                break
            else:
                time.sleep(0.1)
        writer.join(timeout=10)
        assert not failures, failures
        assert not pending
        assert observer.counts == {("live", m): total for m in METRICS}
        assert len({n for n in observer.seen["live"] if 0 < n < total}) >= 2, sorted(observer.seen["live"])
