"""The findings validation corpus: well-known architectures trained briefly,
as a user would, on synthetic tasks they can learn (nothing is downloaded),
and pathologies the findings must still name.

Every healthy model must raise no warning; every pathology must raise the
warnings it is listed with. `precision_table` counts, per rule, how many
models of each kind it fired on; README's precision table is that table
(`tests/test_findings_corpus.py` checks it; `python tests/corpus.py`
prints it).

The models are small and trained for a few dozen steps at batch 16: the
whole corpus takes a few minutes on 2 CPU cores.
"""

import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The repository root, for the demo gallery.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
from keras import layers

import gradwatch
from gradwatch import findings

HEALTHY, PATHOLOGY = "healthy", "pathology"
BATCH = 16
UPDATE_FREQ = 2


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus model.

    Attributes:
        name: Short name (the table's row).
        kind: `HEALTHY` or `PATHOLOGY`.
        train: `(log_dir) -> gradwatch.GradWatch` callback after training.
        expect: The warnings a pathology must raise.
    """

    name: str
    kind: str
    train: object
    expect: frozenset = frozenset()


# -- learnable synthetic tasks -------------------------------------------------


def image_task(steps, size=32, classes=4, seed=0):
    """Images whose class is the quadrant holding a bright blob."""
    rng = np.random.default_rng(seed)
    n = steps * BATCH
    y = rng.integers(0, classes, n)
    x = rng.normal(0.0, 0.3, (n, size, size, 3)).astype(np.float32)
    half = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * half:(r + 1) * half, c * half:(c + 1) * half] += 1.0
    return x, y


def token_task(steps, length=24, vocab=50, seed=0):
    """Token sequences labelled by whether token 1 occurs in them."""
    rng = np.random.default_rng(seed)
    n = steps * BATCH
    x = rng.integers(2, vocab, (n, length))
    y = rng.integers(0, 2, n)
    where = rng.integers(0, length, n)
    x[y == 1, where[y == 1]] = 1
    return x.astype(np.int32), y


def fit(model, x, y, log_dir, **compile_kwargs):
    compile_kwargs.setdefault("optimizer", keras.optimizers.Adam(1e-3))
    compile_kwargs.setdefault("loss", "sparse_categorical_crossentropy")
    model.compile(jit_compile=False, **compile_kwargs)
    watch = gradwatch.GradWatch(log_dir, update_freq=UPDATE_FREQ, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[watch])
    return watch


def fit_unlabelled(model, log_dir, steps=32):
    """Fits a compiled model with its own `train_step` on 16x16 images of a
    bright square at a random place (a GAN's "real" images, a VAE's data)."""
    rng = np.random.default_rng(0)
    images = np.zeros((steps * BATCH, 16, 16, 1), np.float32)
    for image, (r, c) in zip(images, rng.integers(0, 10, (len(images), 2))):
        image[r:r + 6, c:c + 6] = 1.0
    watch = gradwatch.GradWatch(log_dir, update_freq=UPDATE_FREQ, verbose=0)
    model.fit(images, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[watch])
    return watch


# -- healthy well-known architectures ----------------------------------------------


def resnet50(log_dir):
    x, y = image_task(32)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=4)
    return fit(model, x, y, log_dir)


def efficientnet_b0(log_dir):
    x, y = image_task(32)
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=4)
    return fit(model, x, y, log_dir)


def transformer(log_dir):
    """The keras-io text classifier: token and position embedding, one
    Transformer block, pooling, a softmax head."""
    x, y = token_task(80)
    inputs = keras.Input((x.shape[1],))
    tokens = layers.Embedding(50, 32)(inputs)
    positions = layers.Embedding(x.shape[1], 32)(keras.ops.arange(x.shape[1]))
    h = tokens + positions
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=32)(h, h)
    h = layers.LayerNormalization(epsilon=1e-6)(h + layers.Dropout(0.1)(attention))
    ffn = layers.Dense(32, activation="relu")(h)
    ffn = layers.Dense(32)(ffn)
    h = layers.LayerNormalization(epsilon=1e-6)(h + layers.Dropout(0.1)(ffn))
    h = layers.GlobalAveragePooling1D()(h)
    h = layers.Dense(20, activation="relu")(layers.Dropout(0.1)(h))
    outputs = layers.Dense(2, activation="softmax")(layers.Dropout(0.1)(h))
    return fit(keras.Model(inputs, outputs), x, y, log_dir)


def bidirectional_lstm(log_dir):
    x, y = token_task(80)
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        layers.Embedding(50, 16),
        layers.Bidirectional(layers.LSTM(16, return_sequences=True)),
        layers.Bidirectional(layers.LSTM(16)),
        layers.Dense(2, activation="softmax"),
    ])
    return fit(model, x, y, log_dir)


class GAN(keras.Model):
    """The keras-io GAN: a custom `train_step` over two models and two optimizers."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile(optimizer=d_optimizer, jit_compile=False)
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

    def train_step(self, real):
        import tensorflow as tf

        batch = tf.shape(real)[0]
        noise = tf.random.normal((batch, self.latent_dim))
        fake = self.generator(noise)
        images = tf.concat([fake, real], axis=0)
        labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], axis=0)
        labels += 0.05 * tf.random.uniform(tf.shape(labels))
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        noise = tf.random.normal((batch, self.latent_dim))
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(tf.zeros((batch, 1)), self.discriminator(self.generator(noise)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        return {"d_loss": d_loss, "g_loss": g_loss}


def gan(log_dir):
    """The keras-io DCGAN shape at 16x16: strided conv discriminator with
    LeakyReLU and a sigmoid output, a Conv2DTranspose generator."""
    latent = 16
    discriminator = keras.Sequential([
        keras.Input((16, 16, 1)),
        layers.Conv2D(16, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(32, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.GlobalMaxPooling2D(),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")
    generator = keras.Sequential([
        keras.Input((latent,)),
        layers.Dense(4 * 4 * 32),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Reshape((4, 4, 32)),
        layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(1, 5, padding="same", activation="sigmoid"),
    ], name="generator")
    model = GAN(discriminator, generator, latent)
    model.compile(keras.optimizers.Adam(3e-4), keras.optimizers.Adam(3e-4),
                  keras.losses.BinaryCrossentropy())
    return fit_unlabelled(model, log_dir)


class Sampling(layers.Layer):
    def call(self, inputs):
        mean, log_var = inputs
        noise = keras.random.normal(keras.ops.shape(mean))
        return mean + keras.ops.exp(0.5 * log_var) * noise


class VAE(keras.Model):
    """The keras-io VAE: a custom `train_step` with a binary cross-entropy
    reconstruction loss and a KL term."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            mean, log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            rec = tf.reduce_mean(tf.reduce_sum(
                keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl = -0.5 * (1 + log_var - tf.square(mean) - tf.exp(log_var))
            loss = rec + tf.reduce_mean(tf.reduce_sum(kl, axis=1))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": loss}


def vae(log_dir):
    latent = 2
    inputs = keras.Input((16, 16, 1))
    h = layers.Conv2D(16, 3, activation="relu", strides=2, padding="same")(inputs)
    h = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(h)
    h = layers.Dense(16, activation="relu")(layers.Flatten()(h))
    mean, log_var = layers.Dense(latent)(h), layers.Dense(latent)(h)
    encoder = keras.Model(inputs, [mean, log_var, Sampling()([mean, log_var])], name="encoder")
    latent_inputs = keras.Input((latent,))
    h = layers.Dense(4 * 4 * 32, activation="relu")(latent_inputs)
    h = layers.Reshape((4, 4, 32))(h)
    h = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(h)
    h = layers.Conv2DTranspose(16, 3, activation="relu", strides=2, padding="same")(h)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(h)
    decoder = keras.Model(latent_inputs, outputs, name="decoder")
    model = VAE(encoder, decoder)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=False)
    return fit_unlabelled(model, log_dir)


# -- pathologies -----------------------------------------------------------------


def small_resnet(activation="relu", blocks=3, width=16):
    inputs = keras.Input((32, 32, 3))
    h = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    h = layers.Activation(activation)(layers.BatchNormalization()(h))
    for _ in range(blocks):
        r = layers.Conv2D(width, 3, padding="same", use_bias=False)(h)
        r = layers.Activation(activation)(layers.BatchNormalization()(r))
        r = layers.Conv2D(width, 3, padding="same", use_bias=False)(r)
        r = layers.BatchNormalization()(r)
        h = layers.Activation(activation)(layers.Add()([h, r]))
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(h))


def resnet_huge_learning_rate(log_dir):
    x, y = image_task(32)
    return fit(small_resnet(), x, y, log_dir, optimizer=keras.optimizers.SGD(50.0))


def plain_cnn(activation, initializer, depth=8, width=16):
    model = keras.Sequential([keras.Input((32, 32, 3))])
    for i in range(depth):
        model.add(layers.Conv2D(width, 3, padding="same", activation=activation,
                                kernel_initializer=initializer, name=f"conv_{i}"))
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(4, activation="softmax", name="predictions"))
    return model


def deep_sigmoid_cnn(log_dir):
    """Sigmoid convs with the old U(+-1/sqrt(fan_in)) init: vanishing gradients."""
    x, y = image_task(32)
    limit = 1.0 / np.sqrt(9 * 16)
    model = plain_cnn("sigmoid", keras.initializers.RandomUniform(-limit, limit))
    return fit(model, x, y, log_dir, optimizer=keras.optimizers.SGD(0.01, momentum=0.9))


def dying_relu_cnn(log_dir):
    """A He-initialised ReLU CNN at a learning rate that kills its units."""
    x, y = image_task(32)
    model = plain_cnn("relu", "he_normal", depth=6)
    return fit(model, x, y, log_dir, optimizer=keras.optimizers.SGD(1.0))


def gallery_run(name):
    """A run of the demo gallery, in its quick form."""

    def train(log_dir):
        from demo import gallery

        gallery.train_run(gallery.get_spec(name), os.path.dirname(log_dir), quick=True)
        os.replace(os.path.join(os.path.dirname(log_dir), name), log_dir)

    return train


DEMO_HEALTHY = (
    "03_relu_he_init", "05_leaky_relu_0.2", "06_elu", "07_selu_lecun_normal",
    "08_batchnorm_before_sigmoid", "09_batchnorm_after_sigmoid", "11_relu_large_init_clipnorm",
)
DEMO_PATHOLOGIES = {
    "01_sigmoid_standard_init": {"vanishing_gradients"},
    "02_sigmoid_glorot_init": {"vanishing_gradients"},
    "04_relu_high_lr_dying": {"dying_units"},
    "10_relu_large_init_exploding": {"exploding_gradients", "nonfinite"},
    # Saturated because its init does not suit sigmoid: both are named.
    "12_sigmoid_unit_normal_saturating": {"saturation", "init_mismatch"},
}

def saturated_sigmoid_cnn(log_dir):
    """Sigmoid convs with N(0, 1) weights: pre-activations of std ~ 12."""
    x, y = image_task(24)
    model = plain_cnn("sigmoid", keras.initializers.RandomNormal(stddev=1.0), depth=4)
    return fit(model, x, y, log_dir, optimizer=keras.optimizers.SGD(0.01, momentum=0.9))


def batchnorm_on_sorted_batches(log_dir):
    """A BN CNN fed unshuffled data in blocks of one class, each class
    brighter than the last: the batch statistics jump every 8 steps, and
    past the moving averages' horizon (100 steps at momentum 0.99) the
    moving ones still describe no batch."""
    steps, block = 128, 8
    x, _ = image_task(steps, size=16)
    y = np.repeat(np.arange(steps // block) % 4, block * BATCH)
    x = x + 2.0 * y[:, None, None, None].astype(np.float32)
    inputs = keras.Input((16, 16, 3))
    h = inputs
    for _ in range(2):
        h = layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
        h = layers.Activation("relu")(layers.BatchNormalization()(h))
    outputs = layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    return fit(keras.Model(inputs, outputs), x, y, log_dir)


def selu_unstandardised_inputs(log_dir):
    """A SELU MLP with LeCun init on inputs of mean 2, standard deviation 6."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 6.0, (32 * BATCH, 32)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 8.0).astype(np.int64)
    model = keras.Sequential([keras.Input((32,))] + [
        layers.Dense(32, activation="selu", kernel_initializer="lecun_normal") for _ in range(4)
    ] + [layers.Dense(2, activation="softmax")])
    return fit(model, x, y, log_dir)


CASES = tuple(
    Case(f"demo {name}", HEALTHY, gallery_run(name)) for name in DEMO_HEALTHY
) + tuple(
    Case(f"demo {name}", PATHOLOGY, gallery_run(name), frozenset(expect))
    for name, expect in DEMO_PATHOLOGIES.items()
) + (
    Case("ResNet50 (keras.applications)", HEALTHY, resnet50),
    Case("EfficientNetB0 (keras.applications)", HEALTHY, efficientnet_b0),
    Case("Transformer text classifier", HEALTHY, transformer),
    Case("bidirectional LSTM classifier", HEALTHY, bidirectional_lstm),
    Case("DCGAN", HEALTHY, gan),
    Case("VAE", HEALTHY, vae),
    # Its first updates are many times the weights; the softmax head is then
    # certain and wrong, the loss clips its probabilities and no gradient
    # flows again.
    Case("ResNet at learning rate 50", PATHOLOGY, resnet_huge_learning_rate,
         frozenset({"exploding_gradients"})),
    Case("deep sigmoid CNN", PATHOLOGY, deep_sigmoid_cnn, frozenset({"vanishing_gradients"})),
    Case("ReLU CNN, units dying", PATHOLOGY, dying_relu_cnn, frozenset({"dying_units"})),
    Case("sigmoid CNN with N(0, 1) weights", PATHOLOGY, saturated_sigmoid_cnn,
         frozenset({"saturation", "init_mismatch"})),
    Case("BatchNorm CNN on batches sorted by class", PATHOLOGY, batchnorm_on_sorted_batches,
         frozenset({"bn_skew"})),
    Case("SELU MLP on unstandardised inputs", PATHOLOGY, selu_unstandardised_inputs,
         frozenset({"not_self_normalizing"})),
)


def run_case(case, root):
    """Trains one case; returns its findings (live and re-evaluated, merged)."""
    keras.utils.set_random_seed(0)
    log_dir = os.path.join(root, "".join(c if c.isalnum() else "_" for c in case.name))
    watch = case.train(log_dir)
    by_key = {f.key: f for f in gradwatch.load(log_dir).findings()}
    for f in getattr(watch, "findings", None) or []:  # what the callback saw live
        by_key.setdefault(f.key, f)
    return findings.sort_findings(list(by_key.values()))


def precision_table(results):
    """Markdown: per rule, on how many healthy models and pathologies it fired.

    Args:
        results: `{case: [Finding]}`.
    """
    kinds = {HEALTHY: [c for c in results if c.kind == HEALTHY],
             PATHOLOGY: [c for c in results if c.kind == PATHOLOGY]}
    lines = [
        f"| rule | warnings on the {len(kinds[HEALTHY])} healthy models | infos on them "
        f"| fired on the {len(kinds[PATHOLOGY])} pathologies | pathologies that expect it, caught |",
        "|---|---|---|---|---|",
    ]
    for rule in findings.RULES:
        def count(cases, severity=None):
            return sum(
                any(f.rule == rule and severity in (None, f.severity) for f in results[c])
                for c in cases
            )
        expecting = [c for c in kinds[PATHOLOGY] if rule in c.expect]
        caught = sum(
            any(f.rule == rule and f.severity == findings.WARNING for f in results[c])
            for c in expecting
        )
        lines.append(
            f"| `{rule}` | {count(kinds[HEALTHY], findings.WARNING)} "
            f"| {count(kinds[HEALTHY], findings.INFO)} | {count(kinds[PATHOLOGY])} "
            f"| {caught} of {len(expecting)} |"
        )
    return "\n".join(lines)


def findings_table(results):
    """Markdown: each model and the findings it raised."""
    lines = ["| model | kind | findings |", "|---|---|---|"]
    for case, found in results.items():
        cell = "; ".join(f"{f.severity} `{f.rule}` ({len(f.layers)} layers)" for f in found)
        lines.append(f"| {case.name} | {case.kind} | {cell or 'none'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    names = sys.argv[1:]
    with tempfile.TemporaryDirectory() as root:
        results = {}
        for case in CASES:
            if names and not any(n.lower() in case.name.lower() for n in names):
                continue
            start = time.perf_counter()
            results[case] = run_case(case, root)
            print(f"{case.name}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
            for f in results[case]:
                print("   ", f, file=sys.stderr)
    print(findings_table(results))
    print()
    print(precision_table(results))
