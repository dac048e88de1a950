"""Arguments, layer selection, steps across fits, faults and `load` errors."""

import os
import warnings

import keras
import numpy as np
import pytest

import gradwatch
from gradwatch import hooks
from conftest import fit_and_load, raise_at, rng


def small_model(name_prefix=""):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name=name_prefix + "relu_dense"),
            keras.layers.Dense(8, activation="tanh", name=name_prefix + "tanh_dense"),
            keras.layers.BatchNormalization(name=name_prefix + "bn"),
            keras.layers.Dense(1, name=name_prefix + "out"),
        ]
    )
    model.compile("sgd", "mse")
    return model


def data(n=64):
    x = rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, x[:, :1]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(log_dir=None), TypeError, "log_dir"),
        (dict(log_dir=""), TypeError, "log_dir"),
        (dict(log_dir="x", update_freq=0), ValueError, "update_freq"),
        (dict(log_dir="x", update_freq=2.5), TypeError, "update_freq"),
        (dict(log_dir="x", update_freq=True), TypeError, "update_freq"),
        (dict(log_dir="x", update_freq="epoch"), TypeError, "update_freq"),
        (dict(log_dir="x", layers=3), TypeError, "layers"),
        (dict(log_dir="x", layers=[]), TypeError, "layers"),
        (dict(log_dir="x", layer_types="Dense"), TypeError, "layer_types"),
        (dict(log_dir="x", layer_types=(int,)), TypeError, "layer_types"),
        (dict(log_dir="x", saturation_threshold=1.5), ValueError, "saturation_threshold"),
        (dict(log_dir="x", saturation_threshold="high"), TypeError, "saturation_threshold"),
        (dict(log_dir="x", headline_scalars=1), TypeError, "headline_scalars"),
        (dict(log_dir="x", verbose=5), ValueError, "verbose"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, words):
    with pytest.raises(error, match=words):
        gradwatch.GradWatch(**kwargs)


def test_unwritable_log_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    model = small_model()
    weights = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match="cannot write"):
        model.fit(*data(), verbose=0, callbacks=[gradwatch.GradWatch(str(blocker / "run"))])
    for before, after in zip(weights, model.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_uncompiled_model_is_a_clear_error(log_dir):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    callback = gradwatch.GradWatch(log_dir)
    callback.set_model(model)
    with pytest.raises(ValueError, match="compile"):
        callback.on_train_begin()


def test_select_layers_by_pattern_and_type(tmp_path):
    model = small_model()
    by_pattern = fit_and_load(model, *data(), str(tmp_path / "p"), layers="*_dense", update_freq=2)
    assert by_pattern.layers == ["relu_dense", "tanh_dense"]
    by_type = fit_and_load(small_model(), *data(), str(tmp_path / "t"), layer_types=keras.layers.BatchNormalization)
    assert by_type.layers == ["bn"]
    both = fit_and_load(
        small_model(), *data(), str(tmp_path / "b"), layers=["relu*", "bn"], layer_types=keras.layers.Dense
    )
    assert both.layers == ["relu_dense"]


def test_a_pattern_matching_nothing_lists_the_layers(log_dir):
    with pytest.raises(ValueError, match="relu_dense"):
        fit_and_load(small_model(), *data(), log_dir, layers="nothing*")


class IntegerOutput(keras.layers.Layer):
    """Has a weight, but its first output is an integer tensor."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale", trainable=False)

    def call(self, x):
        return keras.ops.cast(x * self.scale > 0, "int32")


def test_an_unwatchable_layer_is_named_once_and_training_goes_on(log_dir):
    inputs = keras.Input((4,))
    flags = IntegerOutput(name="int_layer")(inputs)
    h = keras.layers.Dense(4, name="dense")(inputs)
    outputs = keras.layers.Dense(1, name="out")(
        keras.layers.Concatenate()([h, keras.ops.cast(flags, "float32")])
    )
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = fit_and_load(model, *data(), log_dir, update_freq=1)
    named = [w for w in caught if "int_layer" in str(w.message)]
    assert len(named) == 1
    assert "int_layer" not in run.layers and run.layers == ["dense", "out"]
    assert len(run.steps) == 2


def test_steps_continue_across_fits_without_overlap(log_dir):
    model = small_model()
    callback = gradwatch.GradWatch(log_dir, update_freq=3, verbose=0)
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[callback])  # steps 0-3
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[callback])  # steps 4-7
    fresh = gradwatch.GradWatch(log_dir, update_freq=3, verbose=0)
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[fresh])  # steps 8-11
    run = gradwatch.load(log_dir)
    # Every third step, and the first step of each fit (0, 4, 8).
    np.testing.assert_array_equal(run.steps, [0, 3, 4, 6, 8, 9])


def test_fitting_again_with_the_same_gradwatch_does_not_trace_again(log_dir):
    # Tracing the train step costs as much as Keras' own first step: a loop
    # of fit(epochs=1) must pay it once, as Keras does.
    start = hooks.Capture.traces
    model = small_model()
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[callback])
    first = hooks.Capture.traces - start
    assert first >= 1
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[callback])
    assert hooks.Capture.traces - start == first
    # A recompiled model has a new train function: trace it. (The same
    # optimizer keeps counting steps; a new one would start again at 0.)
    model.compile(model.optimizer, "mae")
    model.fit(*data(), batch_size=16, verbose=0, callbacks=[callback])
    assert hooks.Capture.traces - start > first
    run = gradwatch.load(log_dir)
    np.testing.assert_array_equal(run.steps, np.arange(12))
    assert np.isfinite(run.metric("activation_var")).all()
    assert np.isfinite(run.metric("gradient_norm")[8:, 0]).all()
    for layer in model.layers:
        assert "call" not in vars(layer)


def test_the_first_fit_traces_the_train_step_once(log_dir):
    # Keras builds Adam's slots inside the traced step, and tf.function then
    # traces it all again; GradWatch builds the optimizer first.
    model = small_model()
    model.compile("adam", "mse")
    start = hooks.Capture.traces
    run = fit_and_load(model, *data(), log_dir, batch_size=16, update_freq=1)
    assert hooks.Capture.traces - start == 1
    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3])


def test_a_new_gradwatch_on_the_same_layers_traces_nothing(tmp_path):
    # A notebook cell run again: a new callback on an already trained model.
    model = small_model()
    model.fit(*data(), batch_size=16, verbose=0,
              callbacks=[gradwatch.GradWatch(str(tmp_path / "a"), update_freq=2, verbose=0)])
    start = hooks.Capture.traces
    model.fit(*data(), batch_size=16, verbose=0,
              callbacks=[gradwatch.GradWatch(str(tmp_path / "b"), update_freq=2, verbose=0)])
    assert hooks.Capture.traces == start
    np.testing.assert_array_equal(gradwatch.load(str(tmp_path / "b")).steps, [4, 6])
    # Other layers are another capture: traced once, then kept as well.
    model.fit(*data(), batch_size=16, verbose=0,
              callbacks=[gradwatch.GradWatch(str(tmp_path / "c"), update_freq=1, layers="out", verbose=0)])
    assert hooks.Capture.traces > start
    assert gradwatch.load(str(tmp_path / "c")).layers == ["out"]


def test_resuming_with_initial_epoch_continues_the_step_axis(tmp_path):
    model = small_model()
    first = str(tmp_path / "resume")
    model.fit(*data(), batch_size=16, epochs=2, verbose=0,
              callbacks=[gradwatch.GradWatch(first, update_freq=2, verbose=0)])
    checkpoint = str(tmp_path / "model.keras")
    model.save(checkpoint)
    restored = keras.models.load_model(checkpoint)
    restored.fit(*data(), batch_size=16, epochs=4, initial_epoch=2, verbose=0,
                 callbacks=[gradwatch.GradWatch(first, update_freq=2, verbose=0)])
    run = gradwatch.load(first)
    np.testing.assert_array_equal(run.steps, np.arange(0, 16, 2))


def test_resuming_with_backup_and_restore_leaves_one_record_per_step(tmp_path):
    # A crash at step 6 of epoch 0 after a backup at step 4: the restarted
    # fit restores the optimizer's step count and re-runs the epoch from
    # there, so steps 4-6 are recorded twice; the later record wins.
    log_dir, backup = str(tmp_path / "run"), str(tmp_path / "backup")
    with pytest.raises(RuntimeError):
        small_model().fit(*data(256), batch_size=16, epochs=2, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup, save_freq=4),
            gradwatch.GradWatch(log_dir, update_freq=1, verbose=0),
            raise_at(6, RuntimeError("crash"))])
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, np.arange(7))
    model = small_model()
    model.fit(*data(256), batch_size=16, epochs=2, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup, save_freq=4),
        gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)])
    steps = int(model.optimizer.iterations.numpy())
    assert steps > 7  # the restore really resumed from the backup
    run = gradwatch.load(log_dir)
    np.testing.assert_array_equal(run.steps, np.arange(steps))
    assert np.isfinite(run.metric("activation_var")).all()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_an_interrupted_fit_keeps_what_it_recorded(log_dir, error):
    model = small_model()
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    with pytest.raises(type(error)):
        model.fit(*data(256), batch_size=16, verbose=0, callbacks=[callback, raise_at(5, error)])
    run = gradwatch.load(log_dir)
    np.testing.assert_array_equal(run.steps, np.arange(6))
    assert np.isfinite(run.metric("activation_var")).all()


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        gradwatch.load(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        gradwatch.load(str(empty))
    (empty / "events.out.tfevents.garbage").write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="No GradWatch data"):
        gradwatch.load(str(empty))


def test_unknown_metric_names_the_ones_present(log_dir):
    run = fit_and_load(small_model(), *data(), log_dir)
    with pytest.raises(KeyError, match="activation_var"):
        run.metric("nope")


def test_init_audit_compares_kernels_with_their_schemes(log_dir):
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu", kernel_initializer="glorot_uniform", name="relu_glorot"),
            # 64 -> 128: LeCun (1/64) and Glorot (1/96) differ.
            keras.layers.Dense(128, activation="selu", kernel_initializer="lecun_normal", name="selu_lecun"),
            keras.layers.Dense(64, kernel_initializer="he_normal", name="linear_then_relu"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = rng(1).normal(size=(32, 64)).astype(np.float32)
    run = fit_and_load(model, x, x[:, :1], log_dir)
    audit = {entry["layer"]: entry for entry in run.init_audit}
    relu = audit["relu_glorot"]
    assert relu["recommended"] == "he" and relu["closest"] == "glorot"
    assert relu["expected"]["he"] == pytest.approx(2 / 64)
    assert relu["ratio"] == pytest.approx(0.5, rel=0.2)  # Glorot gives half of He here
    assert audit["selu_lecun"]["recommended"] == "lecun" and audit["selu_lecun"]["closest"] == "lecun"
    # A linear Dense feeding a ReLU layer is judged by that ReLU.
    assert audit["linear_then_relu"]["recommended"] == "he"
    assert audit["linear_then_relu"]["ratio"] == pytest.approx(1.0, rel=0.2)
