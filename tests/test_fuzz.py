"""Property-based fuzzing of the plugin's HTTP parameters and of `load`."""

import os
import urllib.parse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradwatch
from gradwatch_tensorboard.summary import SummaryWriter
from test_plugin_http import PREFIX, make_client

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_logs")
    writer = SummaryWriter(str(root / "run"), ["a", "b"])
    for step in range(30):
        writer.write_step(step, {"activation_var": [1.0, 2.0], "dead_fraction": [0.0, np.nan]})
    writer.close()
    return make_client(root)


texts = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["run", "activation_var", "0", "-1", "1e9", "NaN", "../", "%2e%2e", "\\", "\x00", "9" * 400]),
)


@FUZZ
@given(run=texts, metric=texts, max_columns=texts)
def test_heatmap_parameters_never_crash(client, run, metric, max_columns):
    query = urllib.parse.urlencode({"run": run, "metric": metric, "max_columns": max_columns})
    response = client.get(PREFIX + "heatmap?" + query)
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)


@FUZZ
@given(run=texts, step=texts, metrics=st.none() | texts)
def test_profile_parameters_never_crash(client, run, step, metrics):
    params = {"run": run, "step": step}
    if metrics is not None:
        params["metrics"] = metrics
    query = urllib.parse.urlencode(params)
    response = client.get(PREFIX + "profile?" + query)
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)


@FUZZ
@given(path=st.text(alphabet=st.sampled_from(list("./\\%2e5cfAZ:index.js\x00")), max_size=40))
def test_static_paths_never_escape(client, path):
    response = client.get(PREFIX + "static/" + urllib.parse.quote(path, safe="/%"))
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert response.mimetype in ("text/javascript", "text/css")


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=2048))
def test_load_on_garbage_is_a_clear_error(tmp_path_factory, content):
    log_dir = tmp_path_factory.mktemp("garbage")
    with open(os.path.join(log_dir, "events.out.tfevents.1.fuzz"), "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match="No GradWatch data"):
        gradwatch.load(str(log_dir))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4000), tail=st.binary(max_size=512))
def test_load_keeps_the_intact_prefix_of_a_damaged_file(tmp_path_factory, cut, tail):
    log_dir = tmp_path_factory.mktemp("damaged")
    writer = SummaryWriter(str(log_dir), ["a"])
    for step in range(20):
        writer.write_step(step, {"activation_var": [float(step)]})
    writer.close()
    (path,) = [os.path.join(log_dir, name) for name in os.listdir(log_dir)]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: max(0, len(data) - cut)] + tail)
    try:
        run = gradwatch.load(str(log_dir))
    except ValueError as e:
        assert "No GradWatch data" in str(e)
        return
    # Whatever survives is an intact prefix of what was written.
    np.testing.assert_array_equal(run.steps, np.arange(len(run.steps)))
    np.testing.assert_array_equal(run.metric("activation_var")[:, 0], run.steps)
