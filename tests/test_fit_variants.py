"""GradWatch under the ways people call `fit`: step labels that are the
optimizer's real steps, and kernels measured whichever optimizer applies
them."""

import keras
import numpy as np
import pytest

import gradwatch
from conftest import column, rng


class OptimizerSteps(keras.callbacks.Callback):
    """The optimizer's number for the last step of every call of the train
    function: the labels GradWatch must write."""

    def __init__(self, optimizer=None):
        super().__init__()
        self.optimizer = optimizer
        self.last_steps = []

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.optimizer or self.model.optimizer
        self.last_steps.append(int(optimizer.iterations.numpy()) - 1)


def _mlp(steps_per_execution):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=steps_per_execution)
    return model


def _data(samples):
    generator = rng()
    x = generator.normal(size=(samples, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def _fit(model, log_dir, expected, **fit_kwargs):
    x, y = fit_kwargs.pop("data")
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(x, y, verbose=0, shuffle=False, callbacks=[callback, expected], **fit_kwargs)


def test_an_uneven_last_execution_is_labelled_with_its_real_last_step(log_dir):
    # 40 samples at batch 8: 5 batches an epoch, run as calls of 2, 2 and 1.
    model = _mlp(steps_per_execution=2)
    expected = OptimizerSteps()
    _fit(model, log_dir, expected, data=_data(40), batch_size=8, epochs=2)
    assert int(model.optimizer.iterations.numpy()) == 10
    assert expected.last_steps == [1, 3, 4, 6, 8, 9]
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, expected.last_steps)


def test_a_resumed_fit_continues_from_the_optimizers_steps(log_dir):
    model = _mlp(steps_per_execution=2)
    expected = OptimizerSteps()
    data = _data(40)
    _fit(model, log_dir, expected, data=data, batch_size=8, epochs=1)
    _fit(model, log_dir, expected, data=data, batch_size=8, epochs=3, initial_epoch=1)
    assert expected.last_steps == [1, 3, 4, 6, 8, 9, 11, 13, 14]
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, expected.last_steps)


def test_steps_per_epoch_runs_are_labelled_with_the_optimizers_steps(log_dir):
    # A repeated dataset with steps_per_epoch not a multiple of
    # steps_per_execution: Keras' last call of an epoch runs a whole
    # execution, past steps_per_epoch.
    import tensorflow as tf

    x, y = _data(64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model = _mlp(steps_per_execution=2)
    expected = OptimizerSteps()
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(dataset, steps_per_epoch=5, epochs=3, verbose=0, callbacks=[callback, expected])
    assert len(expected.last_steps) == 9
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, expected.last_steps)


def test_sparse_recording_with_uneven_executions_records_calls_covering_a_multiple(log_dir):
    model = _mlp(steps_per_execution=2)
    expected = OptimizerSteps()
    x, y = _data(40)
    callback = gradwatch.GradWatch(log_dir, update_freq=4, verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[callback, expected])
    # Calls cover steps [0, 1], [2, 3], [4], [5, 6], [7, 8], [9]: those
    # holding 0, 4 and 8 record, each labelled with its last step.
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, [1, 4, 8])


# -- models that bring their own optimizers ----------------------------------


class GAN(keras.Model):
    """A GAN in the shape of the keras-io example: `compile` takes the two
    optimizers, and `train_step` applies each to its own network."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def train_step(self, real):
        import tensorflow as tf

        batch = tf.shape(real)[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=1)
        fake = self.generator(noise)
        images = tf.concat([fake, real], 0)
        labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], 0)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply(grads, self.discriminator.trainable_weights)
        noise = keras.random.normal((batch, self.latent_dim), seed=2)
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(tf.zeros((batch, 1)), self.discriminator(self.generator(noise)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply(grads, self.generator.trainable_weights)
        return {"d_loss": d_loss, "g_loss": g_loss}


class TwoPartModel(keras.Model):
    """One loss, two parts, each trained by its own optimizer."""

    def __init__(self):
        super().__init__()
        self.encoder = keras.layers.Dense(8, activation="tanh", name="encoder")
        self.head = keras.layers.Dense(1, name="head")

    def call(self, x):
        return self.head(self.encoder(x))

    def compile(self, encoder_optimizer, head_optimizer):
        super().compile(loss="mse")
        self.encoder_optimizer = encoder_optimizer
        self.head_optimizer = head_optimizer

    def train_step(self, data):
        import tensorflow as tf

        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(x) - y))
        parts = (
            (self.encoder_optimizer, self.encoder.trainable_weights),
            (self.head_optimizer, self.head.trainable_weights),
        )
        grads = tape.gradient(loss, [w for _, weights in parts for w in weights])
        grads = iter(grads)
        for optimizer, weights in parts:
            optimizer.apply([next(grads) for _ in weights], weights)
        return {"loss": loss}


def _expected_kernel_metrics(layer, before, learning_rate):
    """With plain SGD the update is -lr * gradient: both metrics follow from
    the kernel before and after one step."""
    after = layer.kernel.numpy()
    update = np.linalg.norm(after - before)
    return update / learning_rate, update / np.linalg.norm(before)


def _one_recorded_step(model, data, log_dir, layers):
    before = {name: layer.kernel.numpy() for name, layer in layers.items()}
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[callback])
    return gradwatch.load(log_dir), before


@pytest.mark.tensorflow_only  # Its train step (or reference) uses tf.GradientTape.
@pytest.mark.parametrize("learning_rates", [(0.05, 0.2)])
def test_a_gan_measures_both_networks_kernels(log_dir, learning_rates):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    latent_dim = 4
    discriminator = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="d_hidden"),
         keras.layers.Dense(1, name="d_out")],
        name="discriminator",
    )
    generator = keras.Sequential(
        [keras.Input((latent_dim,)), keras.layers.Dense(8, activation="relu", name="g_hidden"),
         keras.layers.Dense(6, name="g_out")],
        name="generator",
    )
    gan = GAN(discriminator, generator, latent_dim)
    d_rate, g_rate = learning_rates
    gan.compile(keras.optimizers.SGD(d_rate), keras.optimizers.SGD(g_rate))
    real = tf.data.Dataset.from_tensor_slices(rng().normal(size=(64, 6)).astype("float32")).batch(16)
    layers = {
        "discriminator/d_hidden": discriminator.get_layer("d_hidden"),
        "discriminator/d_out": discriminator.get_layer("d_out"),
        "generator/g_hidden": generator.get_layer("g_hidden"),
        "generator/g_out": generator.get_layer("g_out"),
    }
    recording, before = _one_recorded_step(gan, real, log_dir, layers)
    np.testing.assert_array_equal(recording.steps, [0])
    for name, layer in layers.items():
        rate = d_rate if name.startswith("discriminator") else g_rate
        gradient_norm, update_ratio = _expected_kernel_metrics(layer, before[name], rate)
        assert gradient_norm > 0, name
        np.testing.assert_allclose(column(recording, "gradient_norm", name), gradient_norm, rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(column(recording, "update_ratio", name), update_ratio, rtol=1e-4, err_msg=name)


@pytest.mark.tensorflow_only  # Its train step (or reference) uses tf.GradientTape.
def test_two_optimizers_on_two_parts_of_one_model(log_dir):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = TwoPartModel()
    model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.01))
    x, y = _data(32)
    model(x[:1])  # Built, so the kernels exist before the step.
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    layers = {"encoder": model.encoder, "head": model.head}
    recording, before = _one_recorded_step(model, data, log_dir, layers)
    for name, rate in (("encoder", 0.1), ("head", 0.01)):
        gradient_norm, update_ratio = _expected_kernel_metrics(layers[name], before[name], rate)
        np.testing.assert_allclose(column(recording, "gradient_norm", name), gradient_norm, rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(column(recording, "update_ratio", name), update_ratio, rtol=1e-4, err_msg=name)
    # Steps are counted by the model's own optimizers (model.optimizer,
    # compiled by default, never steps): a second fit continues.
    np.testing.assert_array_equal(recording.steps, [0])
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, [0, 1, 2])


def test_a_layer_called_on_two_batch_sizes_pools_both_calls(log_dir):
    # Like a GAN's discriminator (called on real+fake, then on fake alone):
    # one layer, two calls of one static shape, (None, 4), but different
    # rows at run time. Its statistics pool every element of both calls.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, use_bias=False, kernel_initializer="identity", name="shared")
    # A slice whose size the graph cannot know: rows None, like the batch.
    first_eight = keras.layers.Lambda(lambda t: t[: keras.ops.shape(t)[0] // 4])(inputs)
    whole, part = shared(inputs), shared(first_eight)
    head = keras.layers.Dense(1, name="head")(whole)
    outputs = keras.layers.Lambda(lambda ts: ts[0] + keras.ops.mean(ts[1]))([head, part])
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    # 40 samples at batch 32: a short last batch, so the batch axis is
    # unknown (None) in the traced step.
    x, y = _data(40)
    callback = gradwatch.GradWatch(log_dir, update_freq=1, layers="shared", verbose=0)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    recording = gradwatch.load(log_dir)
    elements = np.concatenate([x[:32], x[:8]])
    np.testing.assert_allclose(column(recording, "activation_mean", "shared", 0), elements.mean(), rtol=1e-5)
    np.testing.assert_allclose(column(recording, "activation_var", "shared", 0), elements.var(), rtol=1e-4)


def test_steps_a_loss_scaler_skips_keep_their_own_labels(log_dir):
    # A huge initial loss scale overflows float16 gradients: the loss scaler
    # skips those steps (the optimizer's iterations do not advance) and
    # halves the scale until they fit. Every step is still recorded, once.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu", dtype="mixed_float16"),
         keras.layers.Dense(1, dtype="float32")]
    )
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01), initial_scale=2.0**40)
    model.compile(optimizer, "mse")
    x, y = _data(160)
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    applied = int(optimizer.inner_optimizer.iterations.numpy())
    assert applied < 10  # Some steps were skipped.
    steps = gradwatch.load(log_dir).steps
    np.testing.assert_array_equal(steps, np.arange(10))
    # The skipped steps updated nothing: no update ratio for them.
    ratios = gradwatch.load(log_dir).metric("update_ratio")[:, 0]
    assert np.isnan(ratios[: 10 - applied]).all() and np.isfinite(ratios[10 - applied:]).all()
