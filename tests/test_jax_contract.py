"""The Keras-on-JAX and JAX internals the JAX capture relies on
(`gradwatch.keras_internals`, `gradwatch.capture_jax`), each checked against
the installed versions. Runs under `KERAS_BACKEND=jax` (test_backends.py
runs it so); a failure names the contract an upgrade broke."""

import keras
import numpy as np
import pytest

from gradwatch import capture_jax
from gradwatch import keras_internals as internals

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="Keras does not run on JAX here"
)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    return x, x[:, :2]


def test_fit_calls_the_train_function_with_the_state_and_an_iterator():
    model = _model()
    seen = []
    model.make_train_function()
    keras_function = model.train_function

    def train_function(state, iterator):
        seen.append(len(state))
        return keras_function(state, iterator)

    # What `hooks._ModelCaptures` installs: fit must look it up per call.
    model.make_train_function = lambda force=False: None
    model.train_function = train_function
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    assert seen == [4, 4], (
        "JAX fit no longer calls model.train_function(state, iterator) once "
        "per execution with a 4-part state"
    )


def test_the_train_step_is_state_and_data_to_logs_and_state():
    model = _model()
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    keras_step = model.train_step
    seen = []

    def step(state, data):
        logs, new_state = keras_step(state, data)
        seen.append((len(state[0]), len(new_state[0])))
        return logs, new_state

    ours = internals.make_train_function(model, step)
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0, callbacks=[_Use(ours)])
    assert seen and seen[0] == (len(model.trainable_variables),) * 2


class _Use(keras.callbacks.Callback):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def on_train_batch_begin(self, batch, logs=None):
        self._model.train_function = self.function


def test_stateless_apply_takes_values_in_the_order_it_was_built_for():
    model = _model()
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    optimizer = model.optimizer
    built = internals.built_for(optimizer)
    assert [id(v) for v in built] == [id(v) for v in model.trainable_variables]
    values = [v.value for v in built]
    grads = [np.ones(v.shape, "float32") for v in built]
    new_values, new_optimizer = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, values
    )
    for before, after in zip(values, new_values):
        np.testing.assert_allclose(np.asarray(after), np.asarray(before) - 0.1, rtol=1e-6)
    assert int(internals.iterations_in(optimizer, new_optimizer)) == int(
        internals.iterations(optimizer)
    ) + 1


def test_a_tracer_names_its_trace_and_a_leaked_one_another():
    import jax

    leaked = []

    def loss(w, x):
        y = w * x
        leaked.append(y)
        return (y * y).sum()

    @jax.jit
    def step(w, x):
        value, grad = jax.value_and_grad(loss)(w, x)
        # Of the step: `x`, `grad`. Of the finished transform: `leaked`.
        assert capture_jax._of_step(grad, x)
        assert not capture_jax._of_step(leaked[0], x)
        return value, grad

    step(np.float32(2.0), np.ones(3, "float32"))
    # Where the step runs eagerly, only concrete values are of the step.
    assert capture_jax._of_step(np.ones(3), None)
