"""`--samples_per_plugin gradwatch=N` on the stock `tensorboard` binary, both
ways, with a run of more than the default 20,000 recorded steps."""

import json

import numpy as np
import pytest

from benchmarks.tensorboard_process import TensorBoardProcess
from gradwatch_tensorboard import metadata
from gradwatch_tensorboard.summary import SummaryWriter

STEPS = 25_000  # more than metadata.SAMPLES_PER_SERIES
# One column per recorded step: 10,000 recorded steps at most per request.
HEATMAP = "data/plugin/gradwatch/heatmap?run=long&metric=gradient_var&max_columns=10000&start_step={}&end_step={}"


@pytest.fixture(scope="module")
def log_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    writer = SummaryWriter(str(root / "long"), ["a", "b"])
    for step in range(STEPS):
        writer.write_step(2 * step, {"gradient_var": [float(step), 1.0]})
    writer.close()
    return root


def served_steps(log_root, *flags):
    """The steps of `long` that `tensorboard --logdir log_root *flags` serves
    once it has read the whole file."""
    with TensorBoardProcess(log_root, flags) as tb:

        def loaded():
            status, text = tb.get("data/plugin/gradwatch/runs")
            runs = json.loads(text)["runs"] if status == 200 else []
            return any(r["last_step"] == 2 * (STEPS - 1) for r in runs)

        tb.wait_for(loaded, timeout=120)
        steps, total = [], set()
        for start in range(0, 2 * STEPS, 20_000):
            status, text = tb.get(HEATMAP.format(start, start + 19_999))
            assert status == 200, text
            body = json.loads(text)
            # Each column is one recorded step, holding its recorded value.
            assert len(body["steps"]) == body["range_steps"]
            assert [row[0] for row in body["values"]] == [s / 2 for s in body["steps"]]
            tile = body["steps"]
            if tile and tile[0] < start:
                # `start` was not kept: the range begins with the kept step
                # whose column covers it, the previous range's last.
                assert tile[0] == steps[-1]
                tile = tile[1:]
            steps += tile
            total.add(body["total_steps"])
    assert total == {len(steps)}
    return steps


def test_by_default_tensorboard_keeps_20000_steps_of_each_series(log_root):
    steps = served_steps(log_root)
    assert metadata.SAMPLES_PER_SERIES == 20_000
    assert len(steps) == 20_000
    assert steps[-1] == 2 * (STEPS - 1)  # the last step is always kept
    assert set(steps) <= set(range(0, 2 * STEPS, 2))


@pytest.mark.parametrize("flag, expected", [("gradwatch=30000", STEPS), ("gradwatch=0", STEPS), ("gradwatch=500", 500)])
def test_samples_per_plugin_raises_or_lowers_it(log_root, flag, expected):
    steps = served_steps(log_root, "--samples_per_plugin", flag)
    assert len(steps) == expected
    if expected == STEPS:
        assert steps == list(range(0, 2 * STEPS, 2))
    assert np.all(np.diff(steps) > 0)
