"""The depth profile read from the run's event files (`step_index`): the
values written at a step, the later of a step written twice, steps appended
after the index was built, and frames still being written."""

import json
import os

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2

from gradwatch_tensorboard import step_index
from gradwatch_tensorboard.summary import SummaryWriter
from test_plugin_http import PREFIX, client_counting_reads

LAYERS = ["a", "b", "c"]


def profile(client, run, step):
    response = client.get(PREFIX + "profile", query_string={"run": run, "step": step})
    return response.status_code, response.get_data(as_text=True)


def values(body, metric):
    return [float(v) for v in json.loads(body)["metrics"][metric]]


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300, 2**35 + 3])
def test_event_step_reads_the_varint_of_any_step(step):
    head = event_pb2.Event(wall_time=1.5, step=step).SerializeToString()
    assert step_index.event_step(head[: step_index._STEP_BYTES]) == step
    # An event without a wall time starts with its step.
    assert step_index.event_step(event_pb2.Event(step=step).SerializeToString()) == step


def test_profile_of_a_restarted_run_keeps_the_later_record(tmp_path):
    run = tmp_path / "restarted"
    first = SummaryWriter(str(run), LAYERS)
    for step in range(5):
        first.write_step(step, {"activation_var": [step, 1.0, 2.0]})
    first.close()
    second = SummaryWriter(str(run), LAYERS)  # resumed from step 3
    for step in range(3, 6):
        second.write_step(step, {"activation_var": [100.0 + step, 1.0, 2.0]})
    second.close()
    client, reads = client_counting_reads(tmp_path)
    assert values(profile(client, "restarted", 2)[1], "activation_var") == [2.0, 1.0, 2.0]
    assert values(profile(client, "restarted", 4)[1], "activation_var") == [104.0, 1.0, 2.0]
    assert reads == []


def test_profile_finds_steps_appended_after_the_index_was_built(tmp_path):
    writer = SummaryWriter(str(tmp_path / "live"), LAYERS)
    writer.write_step(0, {"gradient_var": [1.0, 2.0, 3.0]})
    client, _ = client_counting_reads(tmp_path)
    assert profile(client, "live", 0)[0] == 200
    assert profile(client, "live", 1)[0] == 404
    writer.write_step(1, {"gradient_var": [4.0, np.nan, np.inf]})
    # Not before TensorBoard has read it (its heatmap would not show it).
    assert profile(client, "live", 1)[0] == 404
    client.multiplexer.Reload()
    status, body = profile(client, "live", 1)
    assert status == 200
    assert json.loads(body)["metrics"]["gradient_var"] == [4.0, "NaN", "Infinity"]
    writer.close()


def test_a_frame_still_being_written_is_left_for_later(tmp_path):
    run = tmp_path / "partial"
    writer = SummaryWriter(str(run), LAYERS)
    for step in range(2):
        writer.write_step(step, {"activation_var": [1.0, 2.0, float(step)]})
    (path,) = [run / n for n in os.listdir(run)]
    two_steps = path.stat().st_size
    writer.write_step(2, {"activation_var": [1.0, 2.0, 2.0]})
    writer.close()
    whole = path.read_bytes()
    # The last frame's header and the first bytes of its event (not yet its step).
    path.write_bytes(whole[: two_steps + 12 + 5])
    index = step_index.StepIndex(str(run))
    index.update()
    assert [e.step for e in index.events(1)] == [1]
    assert index.events(2) == []
    path.write_bytes(whole)  # ... and then finished
    index.update()
    assert [e.step for e in index.events(2)] == [2]


def test_profile_answers_from_the_series_in_memory_once_all_are_read(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"), LAYERS)
    for step in range(4):
        writer.write_step(step, {"activation_var": [step, 2.0, 3.0], "gradient_var": [1.0, step, 3.0]})
    writer.close()
    client, _ = client_counting_reads(tmp_path)
    for metric in ("activation_var", "gradient_var"):
        assert client.get(PREFIX + "heatmap", query_string={"run": "run", "metric": metric}).status_code == 200
    client.plugin._profile_from_files = lambda *args: pytest.fail("read the event files")
    status, body = profile(client, "run", 2)
    assert status == 200
    assert values(body, "activation_var") == [2.0, 2.0, 3.0]
    assert values(body, "gradient_var") == [1.0, 2.0, 3.0]


def test_the_runs_indexed_as_tensorboard_starts_are_gradwatch_s_own(tmp_path):
    from gradwatch_tensorboard.plugin import _gradwatch_runs

    for run in ("top", "group/nested"):
        writer = SummaryWriter(str(tmp_path / run), LAYERS)
        writer.write_step(0, {"activation_var": [1.0, 2.0, 3.0]})
        writer.close()
    (tmp_path / "keras_only").mkdir()
    (tmp_path / "keras_only" / "events.out.tfevents.1.host.v2").write_bytes(b"")
    assert sorted(_gradwatch_runs(str(tmp_path))) == ["group/nested", "top"]
    assert sorted(_gradwatch_runs(str(tmp_path / "top"))) == ["."]
