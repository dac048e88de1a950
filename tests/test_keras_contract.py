"""The Keras internals GradWatch relies on (`gradwatch.keras_internals`),
each checked against the installed Keras. A failure here names the
contract an upgrade broke."""

import os
import sys

import keras
import numpy as np
import pytest

from gradwatch import keras_internals as internals


def _model(steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=steps_per_execution)
    return model


def _data(samples=16):
    x = np.random.default_rng(0).normal(size=(samples, 3)).astype("float32")
    return x, x[:, :2]


def test_installed_keras_is_in_the_tested_range():
    def version(text):
        return tuple(int(part) for part in text.split(".")[:2])

    assert version(keras.__version__) >= version(internals.OLDEST_KERAS), (
        f"Keras {keras.__version__} is older than {internals.OLDEST_KERAS}, the "
        "oldest GradWatch supports"
    )
    setup = open(os.path.join(os.path.dirname(__file__), "..", "setup.py")).read()
    assert f'"keras>={internals.OLDEST_KERAS}"' in setup


def test_make_train_function_traces_the_train_step_given_and_leaves_the_models():
    model = _model()
    calls = []
    keras_step = model.train_step

    def step(data):
        calls.append("traced")
        return keras_step(data)

    keras_function = internals.train_function(model)
    ours = internals.make_train_function(model, step)
    assert ours is not keras_function, (
        "make_train_function(force=True) no longer makes a new function"
    )
    assert model.train_function is keras_function
    assert "train_step" not in vars(model)
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # Builds the optimizer.
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    ours(iter(model.distribute_strategy.experimental_distribute_dataset(dataset)))
    assert calls, (
        "make_train_function(force=True) did not trace the instance's "
        "train_step: Keras no longer binds it when making the function"
    )


def test_an_instance_call_replaces_the_layers_call():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    seen = []
    original = layer.call

    def call(*args, **kwargs):
        seen.append(args[0].shape)
        return original(*args, **kwargs)

    internals.replace_method(layer, "call", call)
    layer(np.zeros((4, 3), "float32"))
    assert seen, "Layer.__call__ no longer runs the instance's `call`"
    assert not any(w is call for w in layer.weights)
    internals.restore_method(layer, "call")
    assert "call" not in vars(layer)
    layer(np.zeros((4, 3), "float32"))
    assert len(seen) == 1


def test_the_train_step_applies_gradients_through_optimizer_apply():
    model = _model()
    applied = []
    original = model.optimizer.apply

    def apply(grads, trainable_variables=None):
        applied.append((list(grads), list(trainable_variables)))
        return original(grads, trainable_variables)

    internals.replace_method(model.optimizer, "apply", apply)
    try:
        model.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    finally:
        internals.restore_method(model.optimizer, "apply")
    assert applied, "the train step no longer calls optimizer.apply"
    grads, variables = applied[0]
    assert [id(v) for v in variables] == [id(v) for v in model.trainable_variables], (
        "optimizer.apply no longer gets (grads, trainable_variables) in this order"
    )


def test_fit_calls_the_train_function_it_finds_once_per_execution_with_begin_steps():
    # 5 batches, 2 steps per execution: calls begin at steps 0, 2 and 4.
    model = _model(steps_per_execution=2)
    calls, begins = [], []

    class Swap(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_function = internals.train_function(self.model)

            def counting(iterator):
                calls.append(1)
                return keras_function(iterator)

            internals.set_train_function(self.model, counting)

        def on_train_batch_begin(self, batch, logs=None):
            begins.append(batch)

    model.fit(*_data(40), batch_size=8, epochs=1, verbose=0, callbacks=[Swap()])
    assert len(calls) == 3, "fit no longer calls model.train_function once per execution"
    assert begins == [0, 2, 4], "on_train_batch_begin no longer gets each call's first step"


def test_loss_scale_optimizer_keeps_its_scale_and_inner_optimizer():
    inner = keras.optimizers.SGD(0.1)
    optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=64.0)
    assert optimizer.inner_optimizer is inner
    assert float(internals.loss_scale(optimizer)) == 64.0  # Before it is built.
    variable = keras.Variable(np.ones((2, 2), "float32"))
    optimizer.build([variable])
    assert float(keras.ops.convert_to_numpy(internals.loss_scale(optimizer))) == 64.0
    assert optimizer.dynamic_scale is not None
    assert internals.loss_scale(inner) is None
    optimizer.apply([np.ones((2, 2), "float32")], [variable])
    assert internals.iterations(optimizer) == 1


def test_optimizers_of_finds_the_models_and_those_it_holds():
    model = _model()
    extra = keras.optimizers.Adam()
    model.d_optimizer = extra
    found = internals.optimizers_of(model)
    assert found[0] is model.optimizer and extra in found and len(found) == 2


def test_a_functional_graph_names_its_output_layers_and_each_layers_readers():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(4, name="dense")
    norm = keras.layers.BatchNormalization(name="norm")
    head = keras.layers.Dense(1, activation="sigmoid", name="head")
    model = keras.Model(inputs, head(norm(dense(inputs))))
    assert internals.output_layers(model) == [head], (
        "an output tensor's _keras_history.operation no longer names its layer"
    )
    assert internals.consumers_of(dense) == [norm], (
        "layer._outbound_nodes no longer lists the calls reading its output"
    )
    assert internals.consumers_of(head) == []


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_other_backends_get_a_clear_error(monkeypatch, backend):
    # PyTorch is not installed here, so the backend Keras reports is stood
    # in for.
    import gradwatch

    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(
        RuntimeError, match=f"the '{backend}' backend.*KERAS_BACKEND=tensorflow or jax"
    ):
        gradwatch.GradWatch("unused")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_captured_backends_are_accepted(monkeypatch, backend):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    internals.require_supported_backend()  # No error.


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
