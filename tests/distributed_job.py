"""A training job under tf.distribute, run in its own process by
test_distributed.py (logical devices must be set before TensorFlow starts).

    python distributed_job.py mirrored LOG_DIR
    python distributed_job.py worker LOG_DIR     # one of two, TF_CONFIG set
    python distributed_job.py reference LOG_DIR  # the same job on one device

Keras 3.15's `fit` has two bugs under MultiWorkerMirroredStrategy, with or
without GradWatch: a model made inside `strategy.scope()` fails in its
symbolic build (it reduces the whole data batch, a nest, with
`strategy.reduce`), and the multi-worker reduction of the step's logs takes
`axis=0` of scalars (keras-team/keras#20585, tensorflow/tensorflow#72388).
The workers use the public-API way round both that README documents: an
unbuilt model made outside the scope, built, compiled and fitted inside it,
whose train step returns rank-1 logs.
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


def build(keras, batch_norm=False, sequential=None, inputs=True, synchronized=False):
    keras.utils.set_random_seed(0)
    bias = np.zeros(16, np.float32)
    bias[:5] = -100.0  # 5 units dead on every replica
    layers = [keras.Input((8,))] if inputs else []
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn", synchronized=synchronized))
    layers += [
        keras.layers.Dense(16, activation="relu", name="relu",
                           bias_initializer=keras.initializers.Constant(bias)),
        keras.layers.Dense(16, activation="tanh", name="tanh"),
        keras.layers.Dense(1, name="out"),
    ]
    model = (sequential or keras.Sequential)(layers)
    if inputs:
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


GLOBAL_BATCH, STEPS = 64, 4


def multi_worker_fit(log_dir, strategy):
    """Trains `build(batch_norm=True)` with GradWatch under `strategy`."""
    import keras
    import tensorflow as tf

    import gradwatch

    class RankOneLogs(keras.Sequential):
        def train_step(self, data):
            logs = super().train_step(data)
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    x, y = data()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).repeat().with_options(options)
    # Synchronized: normalising each worker's half by its own statistics
    # (Keras' default) would make every later layer differ from one device.
    model = build(keras, batch_norm=True, sequential=RankOneLogs, inputs=False, synchronized=True)
    with strategy.scope():
        model.build((None, 8))
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=False)
        model.optimizer.build(model.trainable_variables)
        model.fit(dataset, epochs=2, steps_per_epoch=STEPS, verbose=0,
                  callbacks=[gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)])
    resolver = getattr(strategy, "cluster_resolver", None)
    print("TRAINED", getattr(resolver, "task_type", None), getattr(resolver, "task_id", None), flush=True)


def worker(log_dir):
    import tensorflow as tf

    multi_worker_fit(log_dir, tf.distribute.MultiWorkerMirroredStrategy())


def reference(log_dir):
    import tensorflow as tf

    multi_worker_fit(log_dir, tf.distribute.get_strategy())


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"mirrored": mirrored, "worker": worker, "reference": reference}[mode](*args)
