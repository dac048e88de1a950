"""A training job under tf.distribute, run in its own process by
test_distributed.py (logical devices must be set before TensorFlow starts).

    python distributed_job.py mirrored LOG_DIR

Keras 3.15's `fit` under MultiWorkerMirroredStrategy fails on this machine
before and inside the first step (its symbolic build and its per-replica
reduction of the step's logs), with or without GradWatch, so the multi-worker
rule (only the chief writes) is tested on the cluster resolver alone.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    x[::2] += 2.0  # replicas see differently distributed halves
    return x, np.sin(x.sum(axis=1, keepdims=True)).astype(np.float32)


def build(keras, batch_norm=False):
    keras.utils.set_random_seed(0)
    bias = np.zeros(16, np.float32)
    bias[:5] = -100.0  # 5 units dead on every replica
    layers = [keras.Input((8,))]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    layers += [
        keras.layers.Dense(16, activation="relu", name="relu",
                           bias_initializer=keras.initializers.Constant(bias)),
        keras.layers.Dense(16, activation="tanh", name="tanh"),
        keras.layers.Dense(1, name="out"),
    ]
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=False)
    return model


def mirrored(log_dir):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import gradwatch

    x, y = data()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    for batch_norm in (False, True):
        suffix = "_bn" if batch_norm else ""
        with strategy.scope():
            model = build(keras, batch_norm)
        model.fit(x, y, batch_size=64, shuffle=False, verbose=0,
                  callbacks=[gradwatch.GradWatch(os.path.join(log_dir, "mirrored" + suffix), update_freq=1, verbose=0)])
        single = build(keras, batch_norm)
        single.fit(x, y, batch_size=64, shuffle=False, verbose=0,
                   callbacks=[gradwatch.GradWatch(os.path.join(log_dir, "single" + suffix), update_freq=1, verbose=0)])


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"mirrored": mirrored}[mode](*args)
