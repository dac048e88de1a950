"""One recorded training job on the Keras backend of $KERAS_BACKEND, run in
its own process by test_backends.py (Keras picks its backend, and JAX its
devices, once per process).

    python backend_job.py WEIGHTS LOG_DIR [--no-jit] [--devices N]

The model is fixed, with a BatchNormalization layer, dead ReLU units,
sigmoid and linear layers; its initial weights are read from WEIGHTS (an
.npz written by the first job that finds none), so that every backend starts
from the same numbers. `--devices 2` trains under
`keras.distribution.DataParallel` on two host devices (JAX only).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(128, 16)) * 2.0 + 3.0).astype(np.float32)  # BN fed N(3, 2^2)
    return x, rng.integers(0, 4, size=128)


def build(keras):
    import numpy as np

    keras.utils.set_random_seed(1)
    dead = np.zeros(32, np.float32)
    dead[:5] = -100.0  # 5 ReLU units dead on every batch
    return keras.Sequential([
        keras.Input((16,)),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(32, activation="relu", name="relu",
                           bias_initializer=keras.initializers.Constant(dead)),
        keras.layers.Dense(32, activation="sigmoid", name="sigmoid"),
        keras.layers.Dense(4, name="out"),
    ])


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("log_dir")
    parser.add_argument("--no-jit", action="store_true")
    parser.add_argument("--devices", type=int, default=1)
    args = parser.parse_args(argv)
    if args.devices > 1:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import keras
    import numpy as np

    import gradwatch

    if args.devices > 1:
        import jax

        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices()[: args.devices])
        )
    model = build(keras)
    if os.path.exists(args.weights):
        with np.load(args.weights) as saved:
            model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
    else:
        np.savez(args.weights, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=not args.no_jit,
    )
    x, y = data()
    model.fit(
        x, y, batch_size=64, epochs=2, shuffle=False, verbose=0,
        callbacks=[gradwatch.GradWatch(args.log_dir, update_freq=1, verbose=0)],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
