"""`Recording.to_records()` and `.to_frame()`: one row per metric, layer and
step, checked against values written by construction."""

import numpy as np
import pytest

import gradwatch
from gradwatch_tensorboard.summary import SummaryWriter

LAYERS = ["z_conv", "dense_a", "head, \"quoted\""]
STEPS = [0, 5, 7, 20]


def known_value(metric, layer, step):
    """What the fixture records: distinct for every (metric, layer, step)."""
    base = {"activation_var": 1000.0, "dead_fraction": 0.0}[metric]
    return base + 100 * layer + step / 100


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("export") / "my_run"
    writer = SummaryWriter(str(log_dir), LAYERS)
    for step in STEPS:
        writer.write_step(step, {
            "activation_var": [known_value("activation_var", i, step) for i in range(len(LAYERS))],
            # NaN where the metric does not apply, as for a ReLU's saturation.
            "dead_fraction": [known_value("dead_fraction", 0, step), np.nan, known_value("dead_fraction", 2, step)],
        })
    writer.close()
    return gradwatch.load(log_dir)


def expected_rows(metrics):
    return [
        ("my_run", m, layer, step, known_value(m, i, step) if not (m == "dead_fraction" and i == 1) else np.nan)
        for m in metrics for i, layer in enumerate(LAYERS) for step in STEPS
    ]


def assert_rows_equal(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert tuple(got[:4]) == want[:4]
        # float32 as recorded
        np.testing.assert_allclose(got[4], want[4], rtol=1e-6, equal_nan=True)


def test_records_hold_every_metric_layer_and_step_in_order(recording):
    rows = recording.to_records()
    assert rows.dtype.names == ("run", "metric", "layer", "step", "value")
    assert rows["step"].dtype == np.int64
    metrics = [m for m in gradwatch.METRIC_NAMES if m in ("activation_var", "dead_fraction")]
    assert_rows_equal([tuple(r) for r in rows.tolist()], expected_rows(metrics))


def test_records_of_chosen_metrics_and_run_name(recording):
    rows = recording.to_records("dead_fraction", run="baseline")
    assert set(rows["metric"]) == {"dead_fraction"} and set(rows["run"]) == {"baseline"}
    assert len(rows) == len(LAYERS) * len(STEPS)
    one = rows[(rows["layer"] == LAYERS[2]) & (rows["step"] == 7)]
    assert one["value"].tolist() == [pytest.approx(known_value("dead_fraction", 2, 7))]


def test_frame_matches_records_with_layers_in_depth_order(recording):
    pd = pytest.importorskip("pandas")
    frame = recording.to_frame()
    assert list(frame.columns) == ["run", "metric", "layer", "step", "value"]
    rows = recording.to_records()
    assert_rows_equal(list(frame.itertuples(index=False, name=None)), [tuple(r) for r in rows.tolist()])
    # Depth order survives sorting and pivoting, whatever the names' alphabet.
    assert list(frame["layer"].cat.categories) == LAYERS
    table = frame[frame["metric"] == "activation_var"].pivot(index="layer", columns="step", values="value")
    assert list(table.index) == LAYERS and list(table.columns) == STEPS
    np.testing.assert_allclose(table.to_numpy(), recording.metric("activation_var").T, rtol=0)
    assert isinstance(frame, pd.DataFrame)


def test_frame_without_pandas_says_how_to_install_it(recording, without_module):
    without_module("pandas")
    with pytest.raises(ImportError, match=r"pip install pandas.*to_records"):
        recording.to_frame()


@pytest.mark.parametrize("metrics, error, match", [
    ("gradient_var", ValueError, "`metrics` names 'gradient_var'"),
    (["activation_var", 3], TypeError, "`metrics` must hold metric names"),
    (7, TypeError, "`metrics` must be None, a metric name or a list"),
])
def test_bad_metrics_name_the_argument(recording, metrics, error, match):
    with pytest.raises(error, match=match):
        recording.to_records(metrics)


def test_bad_run_names_the_argument(recording):
    with pytest.raises(TypeError, match="`run` must be a str"):
        recording.to_records(run=5)
