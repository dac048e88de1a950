"""The demo gallery shows each run's lesson in the numbers GradWatch records.

One module-scoped fixture trains the quick gallery (`python -m demo --quick
--no-tensorboard`, in-process) into a temporary log dir; the tests then read
the records back with `gradwatch.load` and check each pathology against what
the physics of variance propagation says, with wide margins. Quick mode nets
have `gallery.QUICK_DEPTH` hidden layers (L), so a per-layer factor g shows
as g ** (L - 1) between the first and the last hidden layer.
"""

import contextlib
import io
import math
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

# `python -m pytest` from the root puts the root on sys.path; plain `pytest`
# may not.
ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo import gallery  # noqa: E402
from gradwatch_tensorboard import metadata  # noqa: E402

SIGMOID = "01_sigmoid_standard_init"
HE_RELU = "03_relu_he_init"
DYING = "04_relu_high_lr_dying"
SELU = "07_selu_lecun_normal"
EXPLODING = "10_relu_large_init_exploding"
CLIPPED = "11_relu_large_init_clipnorm"
SATURATING = "12_sigmoid_unit_normal_saturating"

L = gallery.QUICK_DEPTH


@pytest.fixture(scope="module")
def quick_gallery(tmp_path_factory):
    """Runs `python -m demo --quick --no-tensorboard`; returns its printed
    output and the recording of every run."""
    import gradwatch
    from demo.__main__ import main

    logdir = tmp_path_factory.mktemp("gallery")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--quick", "--no-tensorboard", "--logdir", str(logdir)])
    assert code == 0
    recordings = {
        name: gradwatch.load(str(logdir / name)) for name in gallery.QUICK_RUNS
    }
    return out.getvalue(), recordings


def hidden(recording, metric):
    """`metric` for the hidden layers only: [records, L]."""
    columns = [i for i, n in enumerate(recording.layers) if n != "logits"]
    return recording.metric(metric)[:, columns]


def summary(recording):
    return gallery.summarise(recording, math.nan, 0.0, L)


def test_cli_trains_the_quick_runs_and_prints_the_table(quick_gallery):
    output, recordings = quick_gallery
    assert set(recordings) == set(gallery.QUICK_RUNS)
    for name in gallery.QUICK_RUNS:
        assert f"] {name}" in output  # its progress line
    table = output[output.index("run "):]
    for column in ("saturation max", "dead frac max", "grad var first/last",
                   "act mean range", "act var range", "final loss"):
        assert column in table
    for name in gallery.QUICK_RUNS:
        assert name in table
        assert len(recordings[name].steps) == 48 // gallery.QUICK_UPDATE_FREQ
        assert recordings[name].layers[-1] == "logits"
        assert len(recordings[name].layers) == L + 1
    exploding_row = next(line for line in table.splitlines()
                         if line.startswith(EXPLODING))
    assert "step" in exploding_row  # where it first went non-finite


def test_sigmoid_standard_init_vanishes_orders_of_magnitude_below_he_relu(
    quick_gallery,
):
    # sigmoid' <= 1/4 costs at least 16x of backward variance per layer when
    # the weights only preserve variance, and U(+-1/sqrt(n)) weights are 3x
    # smaller still; He-initialised ReLU preserves it.
    _, recordings = quick_gallery
    sigmoid = gallery.backward_ratios(recordings[SIGMOID])
    relu = gallery.backward_ratios(recordings[HE_RELU])
    assert np.isfinite(sigmoid).all() and np.isfinite(relu).all()
    assert sigmoid.max() < relu.min() * 16.0 ** -(L - 1)
    assert 0.1 < relu[0] < 10.0  # He at init: the same order at every depth
    assert summary(recordings[SIGMOID]).grad_var_ratio < 1e-6


def test_high_learning_rate_kills_relu_units(quick_gallery):
    _, recordings = quick_gallery
    baseline = summary(recordings[HE_RELU]).dead_fraction_max
    dying = summary(recordings[DYING]).dead_fraction_max
    assert baseline < 0.25
    assert dying > 0.3
    assert dying > baseline + 0.2
    # Same init, same first batch: no difference before the first update.
    first = [hidden(recordings[n], "dead_fraction")[0] for n in (HE_RELU, DYING)]
    np.testing.assert_allclose(first[0], first[1])
    # Dead on most of the recorded batches, not a one-batch fluke.
    later = np.nanmax(hidden(recordings[DYING], "dead_fraction")[2:], axis=1)
    assert np.median(later) > 0.3


def test_unit_normal_weights_saturate_every_sigmoid_layer(quick_gallery):
    _, recordings = quick_gallery
    run = recordings[SATURATING]
    # Pre-activations of std ~sqrt(128 * Var[inputs]): most units in the
    # flat region from step 0, while run 01's sit in the linear middle.
    assert hidden(run, "saturation_fraction")[0].min() > 0.3
    assert np.nanmax(hidden(recordings[SIGMOID], "saturation_fraction")) < 0.05
    # The distribution at step 0 piles up at the two ends: near 1 (the
    # +1e-1 decade holds 0.1..1) and near 0 (the small decades).
    steps, counts = run.distribution("activation_histogram")
    assert steps[0] == 0
    labels = [b["label"] for b in metadata.histogram_bins()]
    layer = counts[0, run.layers.index("hidden_03")]
    near_zero = layer[labels.index("+1e-8"):labels.index("+1e-2") + 1].sum()
    assert near_zero / layer.sum() > 0.15 and layer[labels.index("+1e-1")] / layer.sum() > 0.4
    rules = {f.rule for f in run.findings()}
    assert "saturation" in rules


def test_selu_keeps_every_layer_near_mean_0_and_variance_1(quick_gallery):
    _, recordings = quick_gallery
    mean = hidden(recordings[SELU], "activation_mean")
    var = hidden(recordings[SELU], "activation_var")
    # At initialisation, the self-normalising fixed point (0, 1) itself.
    assert np.abs(mean[0]).max() < 0.1
    assert 0.8 < var[0].min() and var[0].max() < 1.25
    # While training moves the weights, every layer stays near it.
    assert np.abs(mean).max() < 0.3
    assert 0.5 < var.min() and var.max() < 2.0
    # ReLU, by contrast, has a positive mean by construction.
    assert hidden(recordings[HE_RELU], "activation_mean")[0].min() > 0.2


def test_too_large_init_grows_variance_per_layer_both_ways(quick_gallery):
    # Weight variance 12/fan_in is 6x He's: each ReLU layer multiplies the
    # forward and the backward variance by about 6.
    _, recordings = quick_gallery
    run = recordings[EXPLODING]
    factor = gallery.EXPLODING_SCALE / 2.0
    expected = factor ** (L - 1)
    backward = gallery.backward_ratios(run)[0]  # step 0, before any update
    forward_var = hidden(run, "activation_var")[0]
    forward = forward_var[-1] / forward_var[0]
    # One seeded draw of 128-wide weights moves each layer's factor by about
    # 10% (4.7-6.3 here) and the product to 0.82x (forward) and 0.90x
    # (backward) of 6^(L-1); a factor of 7 per layer leaves this band.
    assert expected / 1.5 < backward < expected * 1.5
    assert expected / 1.5 < forward < expected * 1.5


def test_clipnorm_bounds_the_updates_and_keeps_training_finite(quick_gallery):
    _, recordings = quick_gallery
    free, clipped = recordings[EXPLODING], recordings[CLIPPED]
    # Without clipping: diverges to NaN/Inf.
    assert free.first_nonfinite is not None
    # With it: finite everywhere, and the (pre-clipping) gradient norms never
    # exceed their first value by much, while the unclipped ones explode.
    assert clipped.first_nonfinite is None
    norms = clipped.metric("gradient_norm")
    assert np.isfinite(norms).all()
    assert (norms.max(axis=0) <= 2.0 * norms[0]).all()
    # Row 1 comes before the unclipped run's first NaN/Inf: finite, and
    # already 100x the clipped run's norms in every layer.
    assert free.steps[1] < free.first_nonfinite["step"]
    free_norms = free.metric("gradient_norm")[1]
    assert np.isfinite(free_norms).all()
    assert (free_norms >= 100 * norms[0]).all()
    # Step 0: same weights, same batch, so the two updates differ exactly by
    # the clipping factor |g| / clipnorm wherever |g| > clipnorm.
    grad_norm = free.metric("gradient_norm")[0]
    np.testing.assert_allclose(clipped.metric("gradient_norm")[0], grad_norm)
    ratio = free.metric("update_ratio")[0] / clipped.metric("update_ratio")[0]
    over = grad_norm > gallery.CLIPNORM
    assert over.all()
    np.testing.assert_allclose(
        ratio[over], grad_norm[over] / gallery.CLIPNORM, rtol=0.02
    )


def test_task_is_seeded_standardised_and_uses_every_class():
    x1, y1 = gallery.make_task(1000)
    x2, y2 = gallery.make_task(1000)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x1.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x1.std(axis=0), 1.0, atol=1e-4)
    assert x1.shape == (1000, gallery.INPUT_DIM) and x1.dtype == np.float32
    shares = np.bincount(y1, minlength=gallery.CLASSES) / len(y1)
    assert shares.min() > 0.03  # every class present, none negligible
    _, y_other = gallery.make_task(1000, seed=1)
    assert (y_other != y1).any()


def test_every_run_has_a_lesson_and_a_unique_name():
    assert len(gallery.GALLERY) == 12
    assert len(set(gallery.RUN_NAMES)) == len(gallery.RUN_NAMES)
    assert set(gallery.QUICK_RUNS) <= set(gallery.RUN_NAMES)
    for spec in gallery.GALLERY:
        assert spec.lesson and spec.look_at
    with pytest.raises(KeyError, match="No gallery run"):
        gallery.get_spec("no_such_run")


def test_findings_name_each_pathology_and_spare_the_healthy_runs(quick_gallery):
    """No warning on a healthy run; each pathological run warns of its own."""
    _, recordings = quick_gallery
    expected = {
        SIGMOID: {"vanishing_gradients"},
        DYING: {"dying_units"},
        EXPLODING: {"exploding_gradients", "nonfinite"},
        # Saturated because its init does not suit sigmoid: both named.
        SATURATING: {"saturation", "init_mismatch"},
    }
    # The saturation finding belongs to the saturating run alone.
    assert [n for n, r in recordings.items()
            if "saturation" in {f.rule for f in r.findings()}] == [SATURATING]
    for name, recording in recordings.items():
        warnings = {f.rule for f in recording.findings() if f.severity == "warning"}
        if name in expected:
            assert expected[name] <= warnings, (name, warnings)
        else:
            assert not warnings, (name, warnings)


def test_demo_opens_tensorboard_first_and_trains_into_it(tmp_path):
    """`python -m demo` serves the log dir before the first run trains, so
    the tab fills in as runs train; `kill` stops TensorBoard cleanly."""
    import json
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    logdir = tmp_path / "gallery"
    run = gallery.QUICK_RUNS[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--quick", "--runs", run, "--logdir", str(logdir),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    url = f"http://localhost:{port}/"
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Open "):
                # Answering before any run has trained.
                assert not any(l.startswith("[") for l in lines), lines
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert response.status == 200
            if "Ctrl+C stops it" in line:
                break
        assert any(l.startswith(f"Open {url}#gradwatch") for l in lines), lines
        assert any(l.startswith(f"[ 1/1] {run}") for l in lines), lines
        # The run trained into the dir TensorBoard serves: it lists it.
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(url + "data/runs", timeout=10) as response:
                if run in json.loads(response.read()):
                    break
            assert time.monotonic() < deadline, "TensorBoard never listed the run"
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            # SIGTERM first, so that the demo stops its TensorBoard too.
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_running_the_gallery_again_replaces_its_runs(quick_gallery, tmp_path):
    # The gallery owns its run dirs: a second `python -m demo` writes the same
    # runs again in their place, not beside them (GradWatch keeps one run per
    # log dir and would put another model's or a restarted run in `<dir>-2`).
    import gradwatch
    import warnings

    _, recordings = quick_gallery
    spec = gallery.get_spec(HE_RELU)
    gallery.train_run(spec, tmp_path, quick=True)
    (tmp_path / HE_RELU / "stale.txt").write_text("from the first run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gallery.train_run(spec, tmp_path, quick=True)
    assert sorted(os.listdir(tmp_path)) == [HE_RELU]
    assert not (tmp_path / HE_RELU / "stale.txt").exists()
    again, first = gradwatch.load(str(tmp_path / HE_RELU)), recordings[HE_RELU]
    np.testing.assert_array_equal(again.steps, first.steps)
    np.testing.assert_allclose(again.metric("gradient_var"), first.metric("gradient_var"), rtol=1e-5)
