"""Findings: each rule on a model built to trigger it and on a healthy one,
the rules' persistence and severities on synthetic records, the callback's
console lines and findings document, `load().findings()`, the CLI and the
plugin's `findings` route."""

import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import gradwatch
from conftest import fit_and_load, mlp, rng
from gradwatch import activations, findings
from gradwatch.__main__ import main as cli_main
from gradwatch_tensorboard import metadata
from gradwatch_tensorboard.summary import SummaryWriter


def rules(found):
    return {f.rule: f for f in found}


def fit_model(model, log_dir, x=None, batches=6, batch_size=32, **kwargs):
    if x is None:
        x = rng(0).normal(size=(batches * batch_size, model.input_shape[-1])).astype(np.float32)
    y = rng(1).normal(size=(len(x), 1)).astype(np.float32)
    kwargs.setdefault("update_freq", 1)
    return fit_and_load(model, x, y, log_dir, batch_size=batch_size, **kwargs)


# -- models built to trigger each rule, and healthy ones ----------------------------


def dead_units_model(dead, units=10):
    bias = np.full(units, 3.0, np.float32)
    bias[:dead] = -1e3  # never above zero: dead for every input
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(units, activation="relu", kernel_initializer="he_normal",
                           bias_initializer=keras.initializers.Constant(bias), name="hidden"),
        keras.layers.Dense(units, activation="relu", kernel_initializer="he_normal", name="hidden_2"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A few recorded runs shared by the tests below: `{name: log_dir}`."""
    root = tmp_path_factory.mktemp("findings_runs")
    keras.utils.set_random_seed(0)
    out = {}
    out["dying"] = str(root / "dying")
    fit_model(dead_units_model(6), out["dying"], batch_size=32, batches=4)
    out["healthy"] = str(root / "healthy")
    fit_model(mlp(4, 16, "relu", "he_normal"), out["healthy"], batches=4)
    limit = 1.0 / np.sqrt(16)
    out["vanishing"] = str(root / "vanishing")
    fit_model(mlp(4, 16, "sigmoid", keras.initializers.RandomUniform(-limit, limit)), out["vanishing"], batches=4)
    return out


def test_k_dead_units_give_dying_units_on_that_layer_only(runs):
    found = gradwatch.load(runs["dying"]).findings()
    dying = rules(found)["dying_units"]
    assert dying.layers == ["hidden"]
    assert dying.severity == "warning"
    assert "60% of units dead" in dying.message
    assert dying.metric == "dead_fraction"
    assert dying.first_step == 0 and dying.ongoing
    assert "LeakyReLU" in dying.remedy
    assert all(f.layers == ["hidden"] for f in found if f.rule == "dying_units")


def test_healthy_relu_he_net_has_no_findings(runs):
    assert gradwatch.load(runs["healthy"]).findings() == []


def test_standard_init_sigmoid_stack_vanishes(runs):
    found = rules(gradwatch.load(runs["vanishing"]).findings())
    vanishing = found["vanishing_gradients"]
    assert vanishing.severity == "warning"
    assert vanishing.layers == ["h0", "h1", "h2", "h3"]  # not the read-out
    assert vanishing.details["ratio"] < 1e-3
    assert vanishing.metric == "gradient_var"
    assert "exploding_gradients" not in found
    # U(+-1/sqrt(n)) has a third of Glorot's variance: named, as info.
    init = found["init_mismatch"]
    assert init.severity == "info"
    assert init.layers == ["h0", "h1", "h2", "h3"]
    assert "glorot_uniform" in init.remedy


def test_exploding_growth_across_depth(log_dir):
    keras.utils.set_random_seed(0)
    big = keras.initializers.VarianceScaling(32.0, mode="fan_in", distribution="untruncated_normal")
    found = rules(fit_model(mlp(4, 16, "relu", big), log_dir, batches=4).findings())
    exploding = found["exploding_gradients"]
    assert exploding.layers == ["h0", "h1", "h2", "h3"]
    assert exploding.details["ratio"] > 1e3
    # Frozen weights: the updates are bounded (zero), so it is contained.
    assert exploding.severity == "info"
    assert "contained" in exploding.message
    assert "vanishing_gradients" not in found
    assert found["init_mismatch"].severity == "warning"  # 16x He's variance


def test_saturation_of_unit_normal_sigmoid_and_not_of_glorot_tanh(tmp_path):
    keras.utils.set_random_seed(0)
    # N(0, 1) weights on 128 inputs: pre-activations of standard deviation ~11.
    x = rng(2).normal(size=(128, 128)).astype(np.float32)
    saturated = fit_model(mlp(2, 128, "sigmoid", keras.initializers.RandomNormal(stddev=1.0)),
                          str(tmp_path / "sat"), x=x).findings()
    sat = rules(saturated)["saturation"]
    assert sat.layers == ["h0", "h1"]
    assert sat.metric == "saturation_fraction"
    assert rules(saturated)["init_mismatch"].severity == "warning"  # N(0, 1): ~16x Glorot
    healthy = fit_model(mlp(2, 128, "tanh", "glorot_uniform"), str(tmp_path / "ok"), x=x).findings()
    assert "saturation" not in rules(healthy)
    assert healthy == []


def test_nonfinite_names_first_layer_and_step(log_dir):
    x = rng(8).normal(size=(96, 4)).astype(np.float32)
    x[40, 1] = np.nan  # second batch of 32
    frozen = keras.layers.Dense(4, name="d", kernel_initializer="identity", trainable=False)
    model = keras.Sequential([keras.Input((4,)), frozen, keras.layers.Dense(1, name="head")])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    found = rules(fit_model(model, log_dir, x=x).findings())
    nonfinite = found["nonfinite"]
    assert nonfinite.severity == "warning"
    # SGD(0) still multiplies NaN gradients into the head's weights: the
    # head stays NaN afterwards, the first layer and step are those of the row.
    assert nonfinite.first_step == 1
    assert nonfinite.details["origin"] == "d"
    assert nonfinite.layers[0] == "d"
    assert "NaN/Inf in the activations of d" in nonfinite.message


def test_init_mismatch_relu_with_glorot_is_named(log_dir):
    keras.utils.set_random_seed(0)
    found = fit_model(mlp(2, 16, "relu", "glorot_uniform"), log_dir, batches=3).findings()
    init = rules(found)["init_mismatch"]
    assert init.layers == ["h0", "h1"]
    assert init.severity == "info"
    assert "he_normal" in init.remedy
    assert init.group == "relu/he/low"


@pytest.mark.parametrize(
    "case, cause",
    [
        ("inputs", "inputs not standardised"),
        ("init", "wrong init"),
        ("healthy", None),
    ],
)
def test_selu_stack_self_normalisation(tmp_path, case, cause):
    keras.utils.set_random_seed(0)
    x = rng(3).normal(size=(128, 32)).astype(np.float32)
    init = "lecun_normal"
    if case == "inputs":
        x = x * 6.0 + 2.0
    if case == "init":
        init = keras.initializers.RandomNormal(stddev=1.0)
    found = rules(fit_model(mlp(3, 32, "selu", init), str(tmp_path / case), x=x).findings())
    if cause is None:
        assert "not_self_normalizing" not in found
        return
    drift = found["not_self_normalizing"]
    assert drift.severity == "warning"
    assert set(drift.layers) <= {"h0", "h1", "h2"} and drift.layers
    assert cause in drift.message
    assert any(cause in c for c in drift.details["causes"])


@pytest.mark.parametrize("momentum, expect", [(1.0, "warning"), (0.99, None)])
def test_bn_skew_when_moving_statistics_cannot_follow(log_dir, momentum, expect):
    keras.utils.set_random_seed(0)
    shift = 3.0 if expect else 0.0
    x = rng(6).normal(shift, 2.0 if expect else 1.0, size=(256, 8)).astype(np.float32)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.BatchNormalization(momentum=momentum, name="bn"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    found = rules(fit_model(model, log_dir, x=x).findings())
    if expect is None:
        assert "bn_skew" not in found
        return
    skew = found["bn_skew"]
    assert skew.severity == expect
    assert skew.layers == ["bn"]
    assert skew.metric == "bn_skew"
    assert skew.details["skew"] == pytest.approx(3.0, rel=0.15)


# -- persistence and severities, on synthetic records --------------------------------


class FakeRecording:
    """A recording-like object: layers, steps, metric(name), init_audit."""

    def __init__(self, layers, steps, values, init_audit=None, first_nonfinite=None):
        self.layers = list(layers)
        self.steps = np.asarray(steps, np.int64)
        self._values = {k: np.asarray(v, np.float64) for k, v in values.items()}
        self.metrics = sorted(self._values)
        self.init_audit = init_audit
        self.first_nonfinite = first_nonfinite

    def metric(self, name):
        return self._values[name].copy()


def dead_record(per_batch, window=None, units=10):
    fraction = np.asarray(per_batch, np.float64)[:, None]
    window = fraction if window is None else np.asarray(window, np.float64)[:, None]
    return FakeRecording(
        ["relu"], np.arange(len(fraction)) * 10,
        {"dead_fraction": fraction, "dead_units": fraction * units, "dead_units_window": window * units},
    )


def test_dead_on_one_batch_is_not_dying():
    assert findings.evaluate(dead_record([0, 0.9, 0, 0, 0.9, 0])) == []
    assert findings.evaluate(dead_record([0, 0.9, 0.9, 0, 0, 0])) == []  # 2 < min_records
    found = findings.evaluate(dead_record([0, 0.9, 0.9, 0.9, 0, 0]))
    assert [f.rule for f in found] == ["dying_units"]
    assert (found[0].first_step, found[0].last_step, found[0].ongoing) == (10, 30, False)
    assert found[0].message == "layer relu: 90% of units dead at steps 10\u201330"
    # Dormant, not dead: 40% off on each batch, but hardly any unit off on all.
    assert findings.evaluate(dead_record([0.4] * 6, [0.4, 0.2, 0.1, 0.05, 0.05, 0.05])) == []
    # Dead across the epoch window.
    assert rules(findings.evaluate(dead_record([0.4] * 6, [0.4] * 6)))["dying_units"]
    # Configurable.
    strict = findings.Thresholds(min_records=2)
    assert rules(findings.evaluate(dead_record([0, 0.9, 0.9, 0, 0, 0]), strict))["dying_units"]


def gradient_record(ratio_per_layer, steps=6, update=1e-3, nan_from=None, norm=None):
    layers = ["a", "b", "c", "d", "head"]
    grad = np.array([ratio_per_layer ** (3 - i) for i in range(4)] + [1.0])
    grad_var = np.tile(grad * 1e-6, (steps, 1))
    kernel = np.ones((steps, 5))
    values = {
        "gradient_var": grad_var,
        "gradient_norm": kernel if norm is None else norm,
        "update_ratio": kernel * update,
        "activation_nonfinite": np.zeros((steps, 5)),
    }
    if nan_from is not None:
        grad_var[nan_from:] = np.nan
        values["activation_nonfinite"][nan_from:] = 5.0
    # The read-out is another kind of layer: a different activation.
    audit = [{"layer": n, "activation": "relu" if n != "head" else "linear"} for n in layers]
    return FakeRecording(layers, np.arange(steps) * 8, values, init_audit=audit)


def test_vanishing_and_exploding_compare_like_layers():
    assert findings.evaluate(gradient_record(1.5)) == []
    vanishing = rules(findings.evaluate(gradient_record(1 / 20)))["vanishing_gradients"]
    assert vanishing.layers == ["a", "b", "c", "d"]
    assert vanishing.details["ratio"] == pytest.approx(20.0 ** -3)
    exploding = rules(findings.evaluate(gradient_record(20.0)))["exploding_gradients"]
    assert exploding.severity == "info"  # updates of 1e-3: contained
    assert rules(findings.evaluate(gradient_record(20.0, update=0.5)))["exploding_gradients"].severity == "warning"
    # Growth on the step before NaN/Inf is a warning even without persistence.
    found = rules(findings.evaluate(gradient_record(20.0, nan_from=1)))
    assert found["exploding_gradients"].severity == "warning"
    assert "NaN/Inf followed at step 8" in found["exploding_gradients"].message
    assert found["nonfinite"].first_step == 8


def test_gradient_norm_spike_is_exploding_only_with_what_an_explosion_shows():
    def spike(rows=(6,), layers=(2,), update=1e-3, nan_from=None):
        norm = np.ones((8, 5))
        for row in rows:
            norm[row, list(layers)] = 500.0
        return rules(findings.evaluate(
            gradient_record(1.0, steps=8, norm=norm, update=update, nan_from=nan_from)))

    # One step, one layer, small updates, nothing after: an adaptive
    # optimizer normalises it away (a DenseNet's conv did this, 152x, while
    # training went on healthily).
    assert "exploding_gradients" not in spike()
    large_update = np.full((8, 5), 1e-3)
    large_update[6, 2] = 0.5
    for case in (spike(rows=(6, 7)), spike(layers=(1, 2)), spike(update=large_update),
                 spike(nan_from=7)):
        found = case["exploding_gradients"]
        assert found.severity == "warning"
        assert "c" in found.layers
        assert found.first_step == 48
        assert "jumped 500\u00d7 at step 48" in found.message
    lone = spike(layers=(1, 2))["exploding_gradients"]
    assert lone.layers == ["b", "c"] and lone.metric == "gradient_norm"


def bn_record(skew, batch_var, moving_var):
    n = len(skew)
    column = lambda v: np.asarray(v, np.float64)[:, None]  # noqa: E731
    return FakeRecording(["bn"], np.arange(n) * 8, {
        "bn_skew": column(skew), "bn_batch_var": column(batch_var), "bn_moving_var": column(moving_var),
    })


def test_bn_gap_that_shrinks_is_warm_up_info_and_one_that_stays_is_a_warning():
    noise = rng(4).normal(0.0, 0.1, size=8)
    steady = findings.evaluate(bn_record(2.0 + noise, [1.0] * 8, [1.0] * 8))
    assert steady[0].severity == "warning"
    assert steady[0].message.startswith("layer bn: batch statistics far from the moving statistics (mean gap 2")
    # Too few records to tell a lag from a gap: the benefit of the doubt.
    assert findings.evaluate(bn_record([2.0] * 5, [1.0] * 5, [1.0] * 5))[0].severity == "info"
    moving = [0.9 ** k for k in range(0, 80, 10)]
    converging = findings.evaluate(bn_record([0.1] * 8, [0.02] * 8, [0.02 + m for m in moving]))
    assert converging[0].severity == "info"
    assert "still converging" in converging[0].message
    assert findings.evaluate(bn_record([0.1] * 8, [1.0] * 8, [1.2] * 8)) == []


def test_init_mismatch_is_skipped_before_batchnorm():
    audit = [{"layer": "dense", "activation": "linear", "recommended": "glorot", "ratio": 2.0}]
    bn = np.ones((3, 2))
    bn[:, 0] = np.nan
    with_bn = FakeRecording(["dense", "bn"], [0, 1, 2], {"bn_skew": bn * 0.1}, init_audit=audit)
    assert findings.evaluate(with_bn) == []
    alone = FakeRecording(["dense"], [0, 1, 2], {"activation_var": np.ones((3, 1))}, init_audit=audit)
    assert [f.rule for f in findings.evaluate(alone)] == ["init_mismatch"]


def test_thresholds_are_validated_and_serialisable():
    with pytest.raises(ValueError, match="min_records"):
        findings.Thresholds(min_records=0)
    with pytest.raises(ValueError, match="exploding_ratio"):
        findings.Thresholds(exploding_ratio=0.5)
    with pytest.raises(TypeError):
        findings.evaluate(dead_record([0.9] * 3), thresholds={"min_records": 1})
    assert findings.Thresholds().to_json()["vanishing_ratio"] == 1e-3
    f = findings.evaluate(dead_record([0.9] * 4))[0]
    assert findings.Finding.from_json(json.loads(json.dumps(f.to_json()))) == f


def test_window_is_bounded_and_tracker_keeps_the_history():
    window = findings.RecentWindow(["relu"], maxlen=8)
    tracker = findings.FindingTracker(["relu"])
    events = []
    for step in range(200):
        dead = 0.9 if 20 <= step < 40 else 0.0
        window.append(step, {"dead_fraction": [dead], "dead_units": [10 * dead], "dead_units_window": [10 * dead]})
        events += tracker.update(findings.evaluate(window))
    assert len(window) == 8 and window.metric("dead_fraction").shape == (8, 1)
    assert [status for status, _ in events] == ["new"]
    (dying,) = tracker.findings()
    assert (dying.first_step, dying.last_step, dying.ongoing) == (20, 39, False)
    assert dying.message == "layer relu: 90% of units dead at steps 20\u201339"


# -- the callback: console, document, load -----------------------------------------


@pytest.mark.parametrize("verbose", [0, 1])
def test_callback_prints_findings_and_writes_them(tmp_path, capsys, verbose):
    keras.utils.set_random_seed(0)
    log_dir = str(tmp_path / "run")
    x = rng(5).normal(size=(128, 6)).astype(np.float32)
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=verbose)
    dead_units_model(6).fit(x, x[:, :1], batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    out = capsys.readouterr().out
    if verbose:
        live = [line for line in out.splitlines() if line.startswith("GradWatch warning (dying_units)")]
        assert len(live) == 1, out  # once, not on every recorded step
        assert "layer hidden: 60% of units dead since step 0" in live[0]
        assert "GradWatch findings: 1 warning(s), 0 info" in out
    else:
        assert out == ""
    assert [f.rule for f in callback.findings] == ["dying_units"]
    run = gradwatch.load(log_dir)
    document = run.recorded_findings
    assert document["final"] and document["step"] == int(run.steps[-1])
    assert [f["rule"] for f in document["findings"]] == ["dying_units"]
    assert document["findings"][0] == callback.findings[0].to_json()
    assert [f.to_json() for f in run.findings()] == document["findings"]
    assert "findings" not in run.metrics  # the document is no metric


def test_callback_rejects_bad_thresholds(log_dir):
    with pytest.raises(TypeError, match="thresholds"):
        gradwatch.GradWatch(log_dir, thresholds={"min_records": 2})


# -- the CLI ------------------------------------------------------------------------


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["report", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_text_output_and_strict_exit_codes(runs):
    code, out, err = run_cli(runs["dying"])
    assert code == 0 and err == ""
    assert out.splitlines()[0].startswith("dying: 3 layers, 4 recorded (steps 0\u20133)")
    assert "WARNING dying_units: layer hidden: 60% of units dead since step 0" in out
    assert "remedy: Try LeakyReLU" in out
    assert run_cli(runs["dying"], "--strict")[0] == 1
    code, out, _ = run_cli(runs["healthy"], "--strict")
    assert code == 0 and "no findings" in out


def test_cli_json_lists_findings(runs):
    code, out, _ = run_cli(runs["dying"], "--json")
    assert code == 0
    listing = json.loads(out)
    assert isinstance(listing, list) and len(listing) == 1
    item = listing[0]
    for key in ("rule", "severity", "layers", "first_step", "last_step", "message", "remedy"):
        assert key in item
    assert (item["rule"], item["severity"], item["layers"], item["run"]) == ("dying_units", "warning", ["hidden"], "dying")
    assert json.loads(run_cli(runs["healthy"], "--json")[1]) == []


def test_cli_reports_every_run_under_a_parent(runs):
    parent = os.path.dirname(runs["dying"])
    code, out, _ = run_cli(parent, "--json", "--strict")
    assert code == 1
    by_run = {}
    for item in json.loads(out):
        by_run.setdefault(item["run"], []).append(item["rule"])
    assert by_run["dying"] == ["dying_units"]
    assert "vanishing_gradients" in by_run["vanishing"]
    assert "healthy" not in by_run
    code, out, _ = run_cli(parent)
    assert code == 0 and "healthy: 5 layers" in out and "no findings" in out
    # A threshold override.
    code, out, _ = run_cli(runs["vanishing"], "--json", "--threshold", "vanishing_ratio=1e-9")
    assert "vanishing_gradients" not in [f["rule"] for f in json.loads(out)]


def test_cli_errors_for_missing_or_empty_log_dirs(tmp_path):
    code, out, err = run_cli(str(tmp_path / "nope"))
    assert (code, out) == (2, "") and "no such log directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(str(tmp_path / "empty"))
    assert code == 2 and "no GradWatch data" in err
    code, _, err = run_cli(str(tmp_path / "empty"), "--threshold", "nonsense=1")
    assert code == 2 and "bad --threshold" in err


def test_python_m_gradwatch_report(runs):
    """The real entry point (one process: importing TensorFlow takes seconds)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "gradwatch", "report"]
    done = subprocess.run(command + [runs["dying"], "--json", "--strict"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)[0]["rule"] == "dying_units"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", "--help"], out=io.StringIO())
    assert exit_info.value.code == 0


# -- the summary format and the plugin's route ---------------------------------------


def test_findings_tag_is_not_a_metric():
    assert metadata.metric_from_tag(metadata.FINDINGS_TAG) is None


def test_plugin_serves_the_latest_findings_document(tmp_path, runs):
    import argparse

    import werkzeug.test
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin

    from gradwatch_tensorboard import loader

    root = tmp_path / "logs"
    hostile = "<img src=x onerror=alert(1)>"
    writer = SummaryWriter(str(root / "written"), ["a", hostile])
    for step in range(3):
        writer.write_step(step, {"activation_var": [1.0, 2.0]})
        document = {"version": 1, "step": step, "final": step == 2, "findings": [
            {"rule": "dying_units", "severity": "warning", "layers": [hostile], "first_step": 0,
             "last_step": step, "message": f"step {step}", "remedy": "r", "metric": "dead_fraction"},
            {"rule": "broken"},  # malformed: dropped
        ]}
        writer.write_document(step, metadata.FINDINGS_TAG, document, kind="findings")
    writer.close()
    SummaryWriter(str(root / "none"), ["a"]).write_step(0, {"activation_var": [1.0]})
    os.symlink(runs["dying"], root / "dying")

    flags = argparse.Namespace(samples_per_plugin={})
    loader.GradWatchLoader().fix_flags(flags)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance=flags.samples_per_plugin)
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    context = base_plugin.TBContext(logdir=str(root), data_provider=provider)
    app = application.TensorBoardWSGI([loader.GradWatchLoader().load(context)], data_provider=provider)
    client = werkzeug.test.Client(app, werkzeug.wrappers.Response)

    def get(path, **params):
        response = client.get("/data/plugin/gradwatch/" + path, query_string=params)
        return response.status_code, response.get_data(as_text=True)

    status, text = get("findings", run="written")
    assert status == 200, text
    body = json.loads(text)
    assert body["available"] and body["final"] and body["step"] == 2
    assert [f["message"] for f in body["findings"]] == ["step 2"]
    assert body["findings"][0]["layers"] == [hostile]
    body = json.loads(get("findings", run="none")[1])
    assert body == {"run": "none", "available": False, "step": None, "final": False, "findings": []}
    body = json.loads(get("findings", run="dying")[1])
    assert [f["rule"] for f in body["findings"]] == ["dying_units"]
    assert get("findings", run="nope")[0] == 404
    assert get("findings")[0] == 400
    # The document's tag shows in no listing of metrics.
    runs_body = json.loads(get("runs")[1])
    for run in runs_body["runs"]:
        assert not any("findings" in m for m in run["metrics"])


def test_readme_documents_every_rule_and_threshold():
    import dataclasses
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for rule in findings.RULES:
        assert f"| `{rule}` |" in readme, rule
    for field in dataclasses.fields(findings.Thresholds):
        assert f"`{field.name}`" in readme, field.name
    assert "python -m gradwatch report LOG_DIR [--json] [--strict]" in readme


def test_selu_stack_broken_by_another_layer_is_named():
    layers = ["s0", "bn", "s1", "s2"]
    steps = np.arange(4)
    nan = np.nan
    row = lambda *v: np.tile(np.array(v, float), (4, 1))  # noqa: E731
    values = {
        "activation_mean": row(0.0, 0.0, 0.9, 1.2),
        "activation_var": row(1.0, 1.0, 4.0, 5.0),
        "activation_gain": row(1.0, 1.0, 1.0, 1.0),
        "saturation_fraction": row(0.0, nan, 0.01, 0.01),
        "gradient_norm": row(1.0, nan, 1.0, 1.0),
        "bn_skew": row(nan, 0.1, nan, nan),
    }
    audit = [{"layer": n, "activation": "selu", "recommended": "lecun", "ratio": 1.0} for n in ("s0", "s1", "s2")]
    (drift,) = findings.evaluate(FakeRecording(layers, steps, values, init_audit=audit))
    assert drift.rule == "not_self_normalizing" and drift.layers == ["s1", "s2"]
    assert "layer bn breaks the plain SELU stack" in drift.message
    assert "AlphaDropout" in drift.remedy and drift.remedy[0].isupper()


def test_nonfinite_from_first_nonfinite_alone():
    record = FakeRecording(["a", "b"], [10, 20], {"activation_var": np.ones((2, 2))},
                           first_nonfinite={"step": 5, "layer": "b", "kind": "gradient"})
    (finding,) = findings.evaluate(record)
    assert (finding.rule, finding.layers, finding.first_step, finding.metric) == ("nonfinite", ["b"], 5, "gradient_nonfinite")
    assert finding.message == "NaN/Inf in the gradients of b at step 5"


# -- the cases real architectures showed (issue: findings that hold up) ------------


def saturated_record(activation, loss_head):
    audit = [{"layer": "out", "activation": activation, "loss_head": "out" if loss_head else None}]
    return FakeRecording(["out"], np.arange(5) * 4, {"saturation_fraction": np.full((5, 1), 0.97)},
                         init_audit=audit)


def test_output_paired_with_cross_entropy_is_not_saturation():
    # p - y reaches the logits of a sigmoid/softmax head whatever its saturation.
    assert findings.evaluate(saturated_record("softmax", True)) == []
    assert findings.evaluate(saturated_record("sigmoid", True)) == []
    # Not paired (e.g. an MSE loss), or a nonlinearity whose gradient p - y
    # does not describe: still saturation.
    for activation, head in (("softmax", False), ("tanh", True)):
        assert [f.rule for f in findings.evaluate(saturated_record(activation, head))] == ["saturation"]


def test_loss_heads_are_outputs_feeding_a_cross_entropy():
    from gradwatch import init_audit

    def model(loss, activation="softmax", standalone=False):
        layers = [keras.Input((4,)), keras.layers.Dense(3, activation=None if standalone else activation, name="d")]
        if standalone:
            layers.append(keras.layers.Activation(activation, name="act"))
        m = keras.Sequential(layers)
        m.compile("sgd", loss)
        return m

    assert [l.name for l in init_audit.loss_heads(model("sparse_categorical_crossentropy"))] == ["d"]
    assert [l.name for l in init_audit.loss_heads(model(keras.losses.BinaryCrossentropy(), "sigmoid"))] == ["d"]
    assert init_audit.loss_heads(model("mse")) == []
    m = model(keras.losses.CategoricalCrossentropy(), standalone=True)
    ordered = [(l.name, l, activations.of_layer(l)) for l in m.layers]
    entry = init_audit.audit(ordered, m)[0]
    assert (entry["layer"], entry["activation"], entry["loss_head"]) == ("d", "softmax", "act")

    class Custom(keras.Model):  # computes its loss in train_step (keras-io GAN, VAE)
        def __init__(self):
            super().__init__()
            self.inner = model("mse")

    assert [l.name for l in init_audit.loss_heads(Custom())] == ["d"]


@pytest.mark.parametrize("mode, shape, expect", [
    # He accepts 2/fan_in and 2/fan_out (Keras' EfficientNet, torchvision's
    # ResNets use fan_out); Glorot anything from 1/fan_in to 1/fan_out;
    # LeCun only 1/fan_in (SELU's fixed point).
    (("relu", 2.0, "fan_in"), (64, 8), 1.0),
    (("relu", 2.0, "fan_out"), (64, 8), 1.0),
    (("relu", 2.0, "fan_out"), (3, 3, 16, 4), 1.0),
    (("tanh", 1.0, "fan_out"), (64, 8), 1.0),
    (("tanh", 1.0, "fan_in"), (64, 8), 1.0),
    (("selu", 1.0, "fan_in"), (64, 8), 1.0),
    (("selu", 1.0, "fan_out"), (64, 8), 8.0),
    (("relu", 1.0, "fan_avg"), (32, 32), 0.5),  # Glorot for ReLU: half of He's
    (("relu", 16.0, "fan_out"), (64, 8), 8.0),  # 16/fan_out = 8x He's fan_out
])
def test_init_audit_accepts_each_schemes_fan_modes(mode, shape, expect):
    from gradwatch import init_audit

    activation, scale, fan_mode = mode

    class Kernel:
        def __init__(self, values):
            self.shape = values.shape
            self._values = values

        def numpy(self):
            return self._values

    fan_in, fan_out = init_audit.fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[fan_mode]
    values = rng(9).normal(0.0, 1.0, size=shape)
    values *= np.sqrt(scale / fan) / values.std()  # exactly the variance
    layer = type("L", (), {"kernel": Kernel(values)})()
    entry = init_audit.audit([("k", layer, activations.by_name(activation))])[0]
    assert entry["ratio"] == pytest.approx(expect, rel=1e-6)


def test_bn_gap_within_the_moving_averages_horizon_is_expected_unless_it_grows():
    def record(skew, momentum):
        r = bn_record(skew, [1.0] * len(skew), [1.0] * len(skew))
        r.init_audit = [{"layer": "bn", "batch_norm_momentum": momentum}]
        return r

    noise = rng(4).normal(0.0, 0.1, size=8)
    steady = 2.0 + noise  # steps 0-56
    assert findings.evaluate(record(steady, 0.99)) == []  # horizon: 100 steps
    # Past the horizon (0.9: 10 steps) a gap that stays is a warning; moving
    # statistics that never move (momentum 1) have no horizon to wait for.
    for momentum in (0.9, 1.0):
        assert findings.evaluate(record(steady, momentum))[0].severity == "warning"
    growing = findings.evaluate(record(np.linspace(1.2, 6.0, 8), 0.99))
    assert growing[0].severity == "warning"
    assert "growing within the moving averages' horizon" in growing[0].message


def bn_chain_record(update):
    # conv layers a-d each feeding a BatchNorm (from the graph, in the
    # audit), gradient variance growing 20x per layer towards the input.
    record = gradient_record(20.0, update=update)
    record.init_audit = [dict(e, feeds_batch_norm=e["layer"] != "head") for e in record.init_audit]
    return record


def test_gradient_growth_before_batchnorm_counts_only_with_large_updates():
    # BatchNorm makes the loss blind to the scale of the layer before it:
    # its gradient scales with 1/std of its output, not with a problem.
    assert findings.evaluate(bn_chain_record(1e-3)) == []
    assert rules(findings.evaluate(bn_chain_record(0.5)))["exploding_gradients"].severity == "warning"


def test_chain_stays_within_one_sub_model():
    # A GAN's generator and discriminator: two networks, two losses.
    record = gradient_record(1 / 20)
    record.layers = ["gen/a", "gen/b", "disc/c", "disc/d", "head"]
    record.init_audit = [dict(e, layer=n) for e, n in zip(record.init_audit, record.layers)]
    # 20x per layer is 20x within either network: not vanishing...
    assert findings.evaluate(record) == []
    # ... 8000x across the four layers of one network is.
    record.layers = ["a", "b", "c", "d", "head"]
    record.init_audit = [dict(e, layer=n) for e, n in zip(record.init_audit, record.layers)]
    assert rules(findings.evaluate(record))["vanishing_gradients"].layers == ["a", "b", "c", "d"]


def test_updates_as_large_as_the_weights_in_most_layers_are_divergence():
    update = np.full((6, 5), 1e-3)
    update[2, :3] = [2.0, 13.0, 1.5]  # 3 of 5 layers with kernels
    found = rules(findings.evaluate(gradient_record(1.0, update=update)))["exploding_gradients"]
    assert found.severity == "warning"
    assert found.layers == ["a", "b", "c"]
    assert "updates up to 13\u00d7 the weights in 3 of 5 layers at step 16" in found.message
    assert found.first_step == found.last_step == 16
    update[2, 2] = 0.5  # 2 of 5: not most layers
    assert findings.evaluate(gradient_record(1.0, update=update)) == []


def test_one_first_to_last_ratio_for_rules_headline_and_demo(runs):
    from demo import gallery

    run = gradwatch.load(runs["vanishing"])
    chain, ratio = findings.gradient_var_ratio(run)
    # The main chain of like layers: the sigmoid layers, not the linear read-out.
    assert chain == ["h0", "h1", "h2", "h3"]
    grad = run.metric("gradient_var")
    np.testing.assert_allclose(ratio, grad[:, 0] / grad[:, 3])
    # The headline scalar the callback wrote, the rule's figure and the demo's table.
    np.testing.assert_allclose(run.headline("gradient_var_ratio_first_to_last"), ratio, rtol=1e-6)
    vanishing = rules(run.findings())["vanishing_gradients"]
    assert vanishing.details["ratio"] == pytest.approx(float(np.median(ratio)), rel=1e-6)
    np.testing.assert_array_equal(gallery.backward_ratios(run), ratio)


def test_sustained_condition_keeps_only_long_enough_runs_per_layer():
    from gradwatch.findings.sustained import sustained

    condition = np.array([
        [1, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 1, 1],
        [1, 0, 0],
        [1, 0, 1],
    ], bool)
    hits = sustained(condition, 3)
    # Layer 0: rows 0-1 are too short, rows 3-5 count; layer 1: rows 1-3;
    # layer 2: no three consecutive rows.
    assert hits.runs == {0: [(3, 5)], 1: [(1, 3)]}
    assert (hits.layers, hits.first, hits.last, hits.recent(0)) == ([0, 1], 1, 5, (3, 5))
    assert not sustained(condition, 4) and sustained(condition, 4).layers == []
