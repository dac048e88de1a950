"""Mixed precision, two GradWatch instances, and damaged inputs."""

import warnings

import keras
import numpy as np
import pytest

import gradwatch
from conftest import raise_at, rng


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def two_layer_model(width=16):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(width, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out", dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


def test_float16_statistics_neither_overflow_nor_underflow(tmp_path, policy):
    # Outputs near 300: their squares overflow float16 (max 65504).
    x = (300.0 + rng(0).normal(size=(64, 8))).astype(np.float32)
    policy("mixed_float16")
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, kernel_initializer="identity", name="copy"),
         keras.layers.Dense(1, name="out", dtype="float32")]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = gradwatch.GradWatch(str(tmp_path / "f16"), update_freq=1, verbose=0)
    model.fit(x, x[:, :1], batch_size=64, verbose=0, callbacks=[callback])
    run = gradwatch.load(str(tmp_path / "f16"))
    expected = x.astype(np.float16).astype(np.float64).var()
    np.testing.assert_allclose(run.metric("activation_var")[0, 0], expected, rtol=1e-2)
    assert run.metric("activation_nonfinite")[0, 0] == 0


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_gradient_statistics_undo_the_loss_scale(tmp_path, policy, precision):
    x = rng(1).normal(size=(64, 8)).astype(np.float32)
    y = rng(2).normal(size=(64, 1)).astype(np.float32)
    runs = {}
    for name in ("float32", precision):
        policy(name)
        model = two_layer_model()
        model.fit(x, y, batch_size=64, verbose=0,
                  callbacks=[gradwatch.GradWatch(str(tmp_path / name), update_freq=1, verbose=0)])
        runs[name] = gradwatch.load(str(tmp_path / name))
    # Same weights and data: only rounding separates the two.
    for metric in ("gradient_var", "activation_var"):
        np.testing.assert_allclose(runs[precision].metric(metric), runs["float32"].metric(metric), rtol=0.05, err_msg=metric)


def test_two_models_in_one_process_do_not_interfere(tmp_path):
    x = rng(3).normal(size=(64, 8)).astype(np.float32)
    first, second = two_layer_model(16), two_layer_model(4)
    a = gradwatch.GradWatch(str(tmp_path / "a"), update_freq=1, verbose=0)
    b = gradwatch.GradWatch(str(tmp_path / "b"), update_freq=2, verbose=0)
    first.fit(x, x[:, :1], batch_size=16, shuffle=False, verbose=0, callbacks=[a])
    second.fit(x, x[:, :1], batch_size=16, shuffle=False, verbose=0, callbacks=[b])
    first.fit(x, x[:, :1], batch_size=16, shuffle=False, verbose=0, callbacks=[a])
    run_a, run_b = gradwatch.load(str(tmp_path / "a")), gradwatch.load(str(tmp_path / "b"))
    np.testing.assert_array_equal(run_a.steps, np.arange(8))
    np.testing.assert_array_equal(run_b.steps, [0, 2])
    assert np.isfinite(run_a.metric("activation_var")).all()
    assert np.isfinite(run_b.metric("activation_var")).all()
    # Each records exactly what the same model and callback record alone.
    for width, name, update_freq, fits, interleaved in (
        (16, "a", 1, 2, run_a), (4, "b", 2, 1, run_b),
    ):
        model = two_layer_model(width)
        alone = gradwatch.GradWatch(str(tmp_path / (name + "_alone")), update_freq=update_freq, verbose=0)
        for _ in range(fits):
            model.fit(x, x[:, :1], batch_size=16, shuffle=False, verbose=0, callbacks=[alone])
        expected = gradwatch.load(alone.log_dir)
        np.testing.assert_array_equal(interleaved.steps, expected.steps)
        assert interleaved.metrics == expected.metrics
        for metric in expected.metrics:
            np.testing.assert_allclose(interleaved.metric(metric), expected.metric(metric),
                                       rtol=1e-6, equal_nan=True, err_msg=f"{name} {metric}")


def test_two_gradwatch_on_one_model_each_record_what_they_would_alone(tmp_path):
    x = rng(5).normal(size=(64, 8)).astype(np.float32)

    def fit(*callbacks):
        model = two_layer_model()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # No takeover, no warning.
            model.fit(x, x[:, :1], batch_size=16, shuffle=False, verbose=0,
                      callbacks=list(callbacks))
        return model

    def watcher(name, **kwargs):
        return gradwatch.GradWatch(str(tmp_path / name), verbose=0, **kwargs)

    every = dict(update_freq=1)
    hidden = dict(update_freq=2, layers=["hidden"], saturation_threshold=0.5)
    model = fit(watcher("every", **every), watcher("hidden", **hidden))
    fit(watcher("every_alone", **every))
    fit(watcher("hidden_alone", **hidden))
    for together, alone, steps, layers in [
        ("every", "every_alone", [0, 1, 2, 3], ["hidden", "out"]),
        ("hidden", "hidden_alone", [0, 2], ["hidden"]),
    ]:
        run, reference = gradwatch.load(str(tmp_path / together)), gradwatch.load(str(tmp_path / alone))
        np.testing.assert_array_equal(run.steps, steps)
        assert run.layers == layers
        for metric in reference.metrics:
            np.testing.assert_allclose(run.metric(metric), reference.metric(metric), rtol=1e-6, err_msg=metric)
    # Each used its own saturation threshold (a wider band counts more) on
    # the steps both recorded.
    every_run, hidden_run = gradwatch.load(str(tmp_path / "every")), gradwatch.load(str(tmp_path / "hidden"))
    assert (hidden_run.metric("saturation_fraction")[:, 0] > every_run.metric("saturation_fraction")[[0, 2], 0]).all()
    for layer in model.layers:
        assert "call" not in vars(layer)
    assert "apply" not in vars(model.optimizer)


def test_after_an_interrupted_fit_a_new_gradwatch_starts_clean(tmp_path):
    model = two_layer_model()
    x = rng(6).normal(size=(64, 8)).astype(np.float32)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, x[:, :1], batch_size=16, verbose=0,
                  callbacks=[gradwatch.GradWatch(str(tmp_path / "a"), update_freq=1, verbose=0), raise_at(1, KeyboardInterrupt)])
    with pytest.warns(UserWarning, match="interrupted fit"):
        model.fit(x, x[:, :1], batch_size=16, verbose=0,
                  callbacks=[gradwatch.GradWatch(str(tmp_path / "b"), update_freq=1, verbose=0)])
    np.testing.assert_array_equal(gradwatch.load(str(tmp_path / "a")).steps, [0, 1])
    np.testing.assert_array_equal(gradwatch.load(str(tmp_path / "b")).steps, [2, 3, 4, 5])
    for layer in model.layers:
        assert "call" not in vars(layer)
    assert "apply" not in vars(model.optimizer)


def test_hooks_left_by_a_fit_interrupted_before_its_first_step_are_removed(tmp_path):
    # The leftover attached at the same step as the new GradWatch, so only
    # its silence on the next step gives it away.
    model = two_layer_model()
    x = rng(7).normal(size=(64, 8)).astype(np.float32)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, x[:, :1], batch_size=16, verbose=0,
                  callbacks=[gradwatch.GradWatch(str(tmp_path / "a"), update_freq=1, verbose=0),
                             raise_at(0, KeyboardInterrupt, when="begin")])
    with pytest.warns(UserWarning, match="interrupted"):
        model.fit(x, x[:, :1], batch_size=16, verbose=0,
                  callbacks=[gradwatch.GradWatch(str(tmp_path / "b"), update_freq=1, verbose=0)])
    np.testing.assert_array_equal(gradwatch.load(str(tmp_path / "b")).steps, [0, 1, 2, 3])
    for layer in model.layers:
        assert "call" not in vars(layer)
    assert "apply" not in vars(model.optimizer)


def test_load_keeps_what_precedes_a_truncated_tail(tmp_path):
    model = two_layer_model()
    x = rng(4).normal(size=(64, 8)).astype(np.float32)
    model.fit(x, x[:, :1], batch_size=16, verbose=0,
              callbacks=[gradwatch.GradWatch(str(tmp_path / "t"), update_freq=1, verbose=0)])
    (event_file,) = (tmp_path / "t").glob("*tfevents*")
    data = event_file.read_bytes()
    event_file.write_bytes(data[: len(data) - 40])  # cut into the last record
    run = gradwatch.load(str(tmp_path / "t"))
    np.testing.assert_array_equal(run.steps, np.arange(len(run.steps)))
    assert 1 <= len(run.steps) <= 4
