"""GradWatch on every Keras backend it captures (TensorFlow, JAX).

Keras picks its backend once per process, so each backend runs in its own:
the known-answer suites run again under `KERAS_BACKEND=jax`, and one fixed
job (tests/backend_job.py) trained from the same initial weights must record
the same numbers on TensorFlow and JAX, with `jit_compile` on and off, and on
JAX under `keras.distribution.DataParallel` on two host devices.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import gradwatch

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "backend_job.py")
ROOT = os.path.dirname(HERE)

# The suites whose every test holds on each backend (but for those marked
# `tensorflow_only`): the known answers, the ways of calling fit, faults and
# mixed precision, and the kinds of model.
SUITES = [
    "tests/test_metrics_known.py",
    "tests/test_fit_variants.py",
    "tests/test_precision_and_faults.py",
    "tests/test_models.py",
    "tests/test_jax_contract.py",
    "tests/test_jax_capture.py",
    "tests/test_distributions_known.py",
]


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    return env


def _run_job(backend, weights, log_dir, *flags):
    done = subprocess.run(
        [sys.executable, JOB, weights, log_dir, *flags],
        env=_env(backend), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return gradwatch.load(log_dir)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(tmp_path_factory.mktemp("weights") / "initial.npz")


@pytest.fixture(scope="module")
def on_tensorflow(weights, tmp_path_factory):
    """The job on TensorFlow, as Keras runs it by default (no XLA)."""
    return _run_job("tensorflow", weights, str(tmp_path_factory.mktemp("tf") / "run"), "--no-jit")


def _assert_same_numbers(run, reference):
    assert run.layers == reference.layers
    np.testing.assert_array_equal(run.steps, reference.steps)
    for name in reference.metrics:
        expected, got = reference.metric(name), run.metric(name)
        # Both NaN where a metric does not apply; elsewhere equal to float32
        # round-off, relative to the metric's own scale.
        scale = np.nanmax(np.abs(expected)) if np.isfinite(expected).any() else 1.0
        np.testing.assert_allclose(
            got, expected, rtol=1e-3, atol=1e-5 * scale, err_msg=name
        )


def _assert_known_answers(run):
    # 5 ReLU units forced dead; BatchNorm's input is N(3, 2^2).
    assert (run.metric("dead_units")[:, run.layers.index("relu")] == 5).all()
    assert run.metric("bn_batch_mean")[0, 0] == pytest.approx(3.0, abs=0.3)
    assert run.metric("bn_batch_var")[0, 0] == pytest.approx(4.0, rel=0.2)


def test_the_job_has_known_answers_on_tensorflow(on_tensorflow):
    assert len(on_tensorflow.steps) == 4
    _assert_known_answers(on_tensorflow)


@pytest.mark.parametrize(
    "backend, flags",
    [("jax", []), ("jax", ["--no-jit"]), ("tensorflow", [])],
    ids=["jax-jit", "jax-eager", "tensorflow-xla"],
)
def test_every_backend_records_the_same_numbers(backend, flags, weights, on_tensorflow, tmp_path):
    run = _run_job(backend, weights, str(tmp_path / "run"), *flags)
    _assert_known_answers(run)
    _assert_same_numbers(run, on_tensorflow)


def test_data_parallel_on_two_jax_devices_records_what_one_does(weights, on_tensorflow, tmp_path):
    one = _run_job("jax", weights, str(tmp_path / "one"))
    two = _run_job("jax", weights, str(tmp_path / "two"), "--devices", "2")
    _assert_same_numbers(two, one)
    _assert_same_numbers(two, on_tensorflow)


@pytest.mark.parametrize("backend", ["jax"])
def test_known_answer_suites_pass_on(backend):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=ROOT, env=_env(backend), capture_output=True, text=True, timeout=1800,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" in summary, summary  # tensorflow_only
