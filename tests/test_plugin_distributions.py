"""The distribution routes, through TensorBoard's own WSGI app and data
provider, on runs whose answers are known by construction
(tests/distribution_runs.py)."""

import numpy as np
import pytest

from distribution_runs import (
    BATCH, CONSTANT_UNITS, DEAD, DISTRIBUTION_STEPS, HOSTILE_DEAD_SINCE, HOSTILE_STEPS, RELU_UNITS,
    write_distribution_runs,
)
from gradwatch_tensorboard import distributions, metadata
from runs import HOSTILE_LAYERS, HOSTILE_RUN
from test_plugin_http import PREFIX, get_json, make_client

LABELS = [b["label"] for b in metadata.histogram_bins()]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_client(write_distribution_runs(tmp_path_factory.mktemp("distributions")))


def numbers(values):
    """A JSON array (NaN and Infinity as strings) as floats."""
    return np.array(values, dtype=object).astype(float)


def test_runs_lists_the_distributions_each_run_recorded(client):
    runs = {r["run"]: r for r in get_json(client, "runs")["runs"]}
    assert runs["known"]["distributions"] == list(metadata.DISTRIBUTION_NAMES)
    assert runs[HOSTILE_RUN]["distributions"] == ["activation_histogram", "unit_activity"]


def test_a_constant_layer_fills_one_bin_at_every_step(client):
    body = get_json(client, "distribution", run="known", name="activation_histogram", layer="constant")
    assert body["labels"] == LABELS and body["columns"] == "bins"
    assert body["steps"] == DISTRIBUTION_STEPS == list(range(0, 16, 4))
    expected = np.zeros(len(LABELS))
    expected[LABELS.index("+1e-1")] = BATCH * CONSTANT_UNITS
    np.testing.assert_array_equal(numbers(body["values"]), [expected] * len(DISTRIBUTION_STEPS))
    assert body["units_recorded"] is None and body["dead_since"] is None and body["capped"] is False


def test_dead_units_have_activity_zero_since_the_first_step(client):
    body = get_json(client, "distribution", run="known", name="unit_activity", layer="relu")
    values = numbers(body["values"])
    assert body["columns"] == "units" and body["labels"][:3] == ["0", "1", "2"]
    assert values.shape == (len(DISTRIBUTION_STEPS), metadata.UNITS_SHOWN)
    assert (values[:, :DEAD] == 0).all() and (values[:, DEAD:RELU_UNITS] > 0).all()
    assert np.isnan(values[:, RELU_UNITS:]).all()
    assert body["units_recorded"] == RELU_UNITS and body["capped"] is False
    assert body["dead_since"] == [0] * DEAD + [None] * (metadata.UNITS_SHOWN - DEAD)


def test_a_layer_wider_than_shown_says_it_is_capped(client):
    body = get_json(client, "distribution", run="known", name="unit_activity", layer="wide")
    assert body["units_recorded"] == metadata.UNITS_SHOWN and body["capped"] is True
    # No saturating nonlinearity: no saturation shares, nothing recorded.
    body = get_json(client, "distribution", run="known", name="unit_saturation", layer="wide")
    assert body["units_recorded"] == 0 and body["capped"] is False


def test_since_when_a_unit_is_dead_follows_its_last_unbroken_zeros(client):
    body = get_json(client, "distribution", run=HOSTILE_RUN, name="unit_activity", layer=HOSTILE_LAYERS[0])
    assert body["layer"] == HOSTILE_LAYERS[0] and body["steps"] == HOSTILE_STEPS
    assert body["dead_since"][:4] == HOSTILE_DEAD_SINCE
    assert body["units_recorded"] == 4


def test_max_columns_keeps_real_recorded_steps(client):
    body = get_json(client, "distribution", run="known", name="activation_histogram", layer="relu", max_columns="2")
    assert body["steps"] == [4, 12] and body["total_steps"] == 4
    full = get_json(client, "distribution", run="known", name="activation_histogram", layer="relu")
    np.testing.assert_array_equal(numbers(body["values"]), numbers(full["values"])[[1, 3]])


def test_one_step_holds_every_layers_row(client):
    body = get_json(client, "distribution_step", run="known", name="activation_histogram", step="8")
    assert body["layers"] == ["relu", "wide", "constant"] and body["step"] == 8
    assert body["steps"] == DISTRIBUTION_STEPS
    values = numbers(body["values"])
    assert values.shape == (3, len(LABELS))
    assert values[2, LABELS.index("+1e-1")] == BATCH * CONSTANT_UNITS == values[2].sum()
    # Every output element of a layer falls in some bin.
    np.testing.assert_array_equal(values.sum(axis=1), [BATCH * RELU_UNITS, BATCH * 300, BATCH * CONSTANT_UNITS])
    # The ReLU's zero bin holds at least its dead units' elements.
    assert values[0, LABELS.index("0")] >= BATCH * DEAD


def test_without_a_step_the_latest_is_served(client):
    body = get_json(client, "distribution_step", run=HOSTILE_RUN, name="activation_histogram")
    assert body["step"] == HOSTILE_STEPS[-1] and body["layers"] == HOSTILE_LAYERS
    values = numbers(body["values"])
    assert (values[:, len(HOSTILE_STEPS) - 1] == 10).all() and values.sum() == 10 * len(HOSTILE_LAYERS)


@pytest.mark.parametrize("path, params, status, says", [
    ("distribution", {"run": "known", "name": "activation_histogram"}, 400, "'layer'"),
    ("distribution", {"run": "known", "name": "histogram", "layer": "relu"}, 400, "'name' must be one of"),
    ("distribution", {"run": "known", "name": "unit_activity", "layer": "relu", "max_columns": "0"}, 400, "max_columns"),
    ("distribution", {"run": "known", "name": "unit_activity", "layer": "relu", "step": "0"}, 400, "no parameter 'step'"),
    ("distribution", {"run": "known", "name": "unit_activity", "layer": "nope"}, 404, "no layer 'nope'"),
    ("distribution", {"run": "nope", "name": "unit_activity", "layer": "relu"}, 404, "run 'nope'"),
    ("distribution", {"run": HOSTILE_RUN, "name": "gradient_histogram", "layer": "x"}, 404, "no distribution"),
    ("distribution_step", {"run": "known", "name": "unit_activity", "step": "five"}, 400, "must be an integer"),
    ("distribution_step", {"run": "known", "name": "unit_activity", "step": "-1"}, 400, "between 0"),
    ("distribution_step", {"run": "known", "name": "unit_activity", "step": "6"}, 404, "not at 6"),
    ("distribution_step", {"name": "unit_activity"}, 400, "'run'"),
])
def test_bad_parameters_are_named(client, path, params, status, says):
    response = client.get(PREFIX + path, query_string=params)
    assert response.status_code == status, response.get_data(as_text=True)
    assert says in response.get_data(as_text=True)


def test_dead_since_by_definition():
    steps = np.array([0, 4, 8])
    activity = np.array([[0.5, 0.0, 0.0, np.nan], [0.0, 0.0, 0.2, np.nan], [0.0, 0.0, 0.0, np.nan]])
    assert distributions.dead_since(steps, activity) == [4, 0, 8, None]
    assert distributions.dead_since(np.zeros(0, np.int64), np.zeros((0, 2))) == [None, None]


def test_a_chosen_step_serves_that_steps_rows(client):
    # The hostile run fills bin `row` at its row-th step.
    body = get_json(client, "distribution_step", run=HOSTILE_RUN, name="activation_histogram", step="2")
    values = numbers(body["values"])
    assert body["step"] == 2 and (values[:, 1] == 10).all() and values.sum() == 10 * len(HOSTILE_LAYERS)
