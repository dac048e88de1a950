"""What the JAX capture costs the training loop (runs under
`KERAS_BACKEND=jax`; tests/test_backends.py runs it so)."""

import keras
import numpy as np
import pytest

import gradwatch
from gradwatch.capture import Capture

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="Keras does not run on JAX here"
)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    return x, x[:, :1]


def _count_syncs(model):
    calls = []
    sync = model.jax_state_sync

    def counted():
        calls.append(1)
        return sync()

    model.jax_state_sync = counted
    return calls


@pytest.mark.parametrize("update_freq", [4, 10**6])
def test_only_recorded_steps_and_epoch_ends_sync_the_model(tmp_path, update_freq):
    # Reading `callback.model` on JAX copies the whole training state back
    # to the variables: GradWatch must not, on an unrecorded step.
    model = _model()
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0)  # compiled
    syncs = _count_syncs(model)
    model.fit(*_data(), batch_size=8, epochs=2, verbose=0)
    plain = len(syncs)
    callback = gradwatch.GradWatch(str(tmp_path / "run"), update_freq=update_freq, verbose=0)
    model.fit(*_data(), batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    watched = len(syncs) - plain
    # 32 steps per epoch, recorded every 4th (or only the first): the syncs
    # of a plain fit (its epoch ends) and a read as training begins (a
    # no-op then), none per step.
    assert watched <= plain + 1, (watched, plain)
    recorded = gradwatch.load(str(tmp_path / "run")).steps
    assert len(recorded) == (1 if update_freq > 64 else 16)


def test_recorded_calls_reuse_one_compiled_step(tmp_path):
    model = _model()
    before = Capture.traces
    callback = gradwatch.GradWatch(str(tmp_path / "run"), update_freq=2, verbose=0)
    model.fit(*_data(), batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    assert Capture.traces - before == 1
    assert len(gradwatch.load(str(tmp_path / "run")).steps) == 32


def test_recording_on_jax_does_not_load_tensorflow(tmp_path):
    # Writing uses TensorBoard's protos and NumPy; the capture, keras.ops.
    import os
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, keras, gradwatch\n"
        "x = np.ones((32, 8), 'float32')\n"
        "m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation='relu'),"
        " keras.layers.BatchNormalization(), keras.layers.Dense(1)])\n"
        "m.compile('sgd', 'mse')\n"
        f"m.fit(x, x[:, :1], verbose=0, callbacks=[gradwatch.GradWatch({str(tmp_path / 'run')!r},"
        " update_freq=1, verbose=0)])\n"
        f"print(len(gradwatch.load({str(tmp_path / 'run')!r}).steps), 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, KERAS_BACKEND="jax"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "False"]
