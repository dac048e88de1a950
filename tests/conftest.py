"""Shared helpers: small models whose statistics are known by construction."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The repository root, for `benchmarks` (the soak, the TensorBoard launcher).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """Skips `tensorflow_only` tests on another Keras backend (the backend
    runs of tests/test_backends.py)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow code, and Keras runs on {backend}")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "run")


def fit_and_load(model, x, y, log_dir, batch_size=32, epochs=1, **gradwatch_kwargs):
    """Fits `model` with a GradWatch callback and reads back what it wrote."""
    import gradwatch

    gradwatch_kwargs.setdefault("verbose", 0)
    callback = gradwatch.GradWatch(log_dir, **gradwatch_kwargs)
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
        callbacks=[callback],
    )
    return gradwatch.load(log_dir)


def mlp(depth, width, activation, initializer, input_dim=None, learning_rate=0.0, prefix="h"):
    """`depth` Dense layers `{prefix}0..` of `width` units, then a linear
    `head`, compiled with SGD at `learning_rate` and MSE. The default rate 0
    freezes the weights, so every recorded step shows the initial state."""
    import keras

    layers = [keras.Input((input_dim or width,))]
    for i in range(depth):
        layers.append(
            keras.layers.Dense(width, activation=activation, kernel_initializer=initializer, name=f"{prefix}{i}")
        )
    layers.append(keras.layers.Dense(1, name="head"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    return model


def raise_at(batch, error, when="end"):
    """A Keras callback that raises `error` (an exception or its class) as
    batch `batch` of an epoch begins or ends: a KeyboardInterrupt, or
    another callback failing, in the middle of `fit`."""
    import keras

    class RaiseAt(keras.callbacks.Callback):
        def on_train_batch_begin(self, index, logs=None):
            if when == "begin" and index == batch:
                raise error

        def on_train_batch_end(self, index, logs=None):
            if when == "end" and index == batch:
                raise error

    return RaiseAt()


def column(recording, metric, layer, row=-1):
    """One layer's value of `metric` at recorded row `row`."""
    return recording.metric(metric)[row, recording.layers.index(layer)]


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def without_module(monkeypatch):
    """`without_module("pandas")` makes importing pandas (and its submodules)
    fail, as where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def block(name):
        def blocked(module, *args, **kwargs):
            if module == name or module.startswith(name + "."):
                raise ImportError(f"No module named {name!r}")
            return real_import(module, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", blocked)

    return block
