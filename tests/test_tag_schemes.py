"""One tag scheme for new runs, `gradwatch/<kind>/<name>`, defined in
`metadata`; runs written by gradwatch 0.1.0 (`gradwatch/<metric>`,
`gradwatch_headline/<name>`, `gradwatch_<document>`) still load, in
`gradwatch.load` and in the plugin, and so does a 0.1.0 run continued by
this version."""

import json
import os
import re
import socket
import time

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

import gradwatch
from gradwatch import reader
from gradwatch_tensorboard import metadata, records
from gradwatch_tensorboard.summary import SummaryWriter
from test_plugin_http import get_json, make_client

LAYERS = ["a", "b"]
FINDING = {"rule": "dying_units", "severity": "warning", "layers": ["b"], "first_step": 1,
           "last_step": 4, "message": "layer b: 60% of units dead since step 1", "remedy": "r",
           "metric": "dead_fraction", "ongoing": True, "summary": "60% of units dead",
           "group": "", "details": {}}


def activation_var(step):
    return [1.0 + step, 2.0 + step]


def write_release_run(log_dir, steps):
    """A run as gradwatch 0.1.0's `SummaryWriter` wrote it: its tags spelled
    out here, as that release wrote them, not taken from `metadata`."""
    os.makedirs(log_dir, exist_ok=True)
    # Named a minute back, as an earlier release's file is: it sorts first.
    path = os.path.join(log_dir, f"events.out.tfevents.{int(time.time()) - 60:010d}.{socket.gethostname()}.0.0.gradwatch")
    with open(path, "wb") as f:
        records = RecordWriter(f)

        def event(step, *values):
            records.write(event_pb2.Event(wall_time=time.time(), step=step,
                                          summary=summary_pb2.Summary(value=list(values))).SerializeToString())

        def document(tag, content, plugin):
            value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(
                np.array([json.dumps(content).encode()], dtype=object)))
            if plugin == "text":
                value.metadata.plugin_data.plugin_name = "text"
                value.metadata.data_class = summary_pb2.DATA_CLASS_TENSOR
            else:
                value.metadata.CopyFrom(metadata.create_document_metadata("findings"))
            return value

        event(steps[0], document("gradwatch_init_audit", [{"layer": "a", "activation": "relu"}], "text"))
        for i, step in enumerate(steps):
            vector = summary_pb2.Summary.Value(
                tag="gradwatch/activation_var",
                tensor=tensor_util.make_tensor_proto(np.array(activation_var(step), np.float32)))
            scalar = summary_pb2.Summary.Value(
                tag="gradwatch_headline/nonfinite_count",
                tensor=tensor_util.make_tensor_proto(np.float32(step)))
            if i == 0:  # metadata with each tag's first record, as 0.1.0 wrote it
                vector.metadata.CopyFrom(metadata.create_summary_metadata(LAYERS))
                scalar.metadata.plugin_data.plugin_name = "scalars"
            event(step, vector, scalar)
        event(steps[-1], document("gradwatch_first_nonfinite", {"step": steps[-1], "layer": "b", "kind": "gradient"}, "text"))
        event(steps[-1], document("gradwatch_findings", {"version": 1, "step": steps[-1], "final": True,
                                                        "findings": [FINDING]}, "findings"))
        records.close()


def test_new_runs_use_one_scheme_for_every_tag(tmp_path):
    import keras

    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    x[20, 0] = np.nan  # first NaN: its document too
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, x[:, :1], batch_size=16, verbose=0,
              callbacks=[gradwatch.GradWatch(str(tmp_path), update_freq=1, verbose=0)])
    (name,) = os.listdir(tmp_path)
    tags = {v.tag for data in records.read_records(str(tmp_path / name))
            for v in event_pb2.Event.FromString(data).summary.value}
    assert tags and all(re.fullmatch(r"gradwatch/(metric|headline|document|distribution)/[a-z_]+", t) for t in tags), tags
    documents = {t for t in tags if metadata.parse_tag(t)[0] == metadata.DOCUMENT}
    assert documents == {metadata.INIT_AUDIT_TAG, metadata.FIRST_NONFINITE_TAG, metadata.FINDINGS_TAG}
    assert {metadata.parse_tag(t)[0] for t in tags} == {
        metadata.METRIC, metadata.HEADLINE, metadata.DOCUMENT, metadata.DISTRIBUTION
    }


@pytest.mark.parametrize("tag, parsed", [
    ("gradwatch/metric/gradient_var", ("metric", "gradient_var")),
    ("gradwatch/gradient_var", ("metric", "gradient_var")),
    ("gradwatch/headline/nonfinite_count", ("headline", "nonfinite_count")),
    ("gradwatch_headline/nonfinite_count", ("headline", "nonfinite_count")),
    ("gradwatch/document/findings", ("document", "findings")),
    ("gradwatch_findings", ("document", "findings")),
    ("gradwatch/other/x", None),
    ("loss", None),
])
def test_both_schemes_parse_to_the_same_kind_and_name(tag, parsed):
    assert metadata.parse_tag(tag) == parsed


def test_a_release_run_loads(tmp_path):
    write_release_run(str(tmp_path / "old"), steps=[0, 1, 2, 3, 4])
    run = gradwatch.load(str(tmp_path / "old"))
    assert run.layers == LAYERS and run.metrics == ["activation_var"]
    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(run.metric("activation_var"), [activation_var(s) for s in range(5)])
    np.testing.assert_array_equal(run.headline("nonfinite_count"), [0, 1, 2, 3, 4])
    assert run.init_audit == [{"layer": "a", "activation": "relu"}]
    assert run.first_nonfinite == {"step": 4, "layer": "b", "kind": "gradient"}
    assert run.recorded_findings["findings"] == [FINDING]
    assert reader.describe(str(tmp_path / "old")) == (LAYERS, 0, 4)


def test_a_release_run_and_one_continued_by_this_version_serve(tmp_path):
    write_release_run(str(tmp_path / "old"), steps=[0, 1, 2, 3, 4])
    write_release_run(str(tmp_path / "continued"), steps=[0, 1, 2, 3, 4])
    time.sleep(0.01)  # the new records are the later ones
    writer = SummaryWriter(str(tmp_path / "continued"), LAYERS)
    for step in range(4, 8):  # step 4 written again: the new record wins
        writer.write_step(step, {"activation_var": [10.0 * step, 0.0]})
    writer.close()

    continued = gradwatch.load(str(tmp_path / "continued"))
    np.testing.assert_array_equal(continued.steps, range(8))
    expected = [activation_var(s) for s in range(4)] + [[10.0 * s, 0.0] for s in range(4, 8)]
    np.testing.assert_array_equal(continued.metric("activation_var"), expected)

    client = make_client(tmp_path)
    runs = {r["run"]: r for r in get_json(client, "runs")["runs"]}
    assert runs["old"]["metrics"] == ["activation_var"] and runs["old"]["layers"] == LAYERS
    assert (runs["old"]["last_step"], runs["continued"]["last_step"]) == (4, 7)
    old = get_json(client, "heatmap", run="old", metric="activation_var")
    assert old["steps"] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(old["values"], [activation_var(s) for s in range(5)])
    both = get_json(client, "heatmap", run="continued", metric="activation_var")
    assert both["steps"] == list(range(8))
    np.testing.assert_array_equal(both["values"], expected)
    profile = get_json(client, "profile", run="old", step=2)
    assert profile["metrics"] == {"activation_var": activation_var(2)}
    served = get_json(client, "findings", run="old")
    assert served["available"] and served["step"] == 4 and served["findings"] == [FINDING]
