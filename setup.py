"""Installs gradwatch and its TensorBoard plugin.

TensorFlow is a dependency. A user who already has a TensorFlow build of their
own (a GPU build, `tensorflow-cpu`, `tensorflow-macos`, ...) can keep it:
`pip install --no-deps .` then `pip install numpy tensorboard`, or set
GRADWATCH_SKIP_TF_DEP=1 while installing.
"""

import os

from setuptools import find_packages, setup

# Keras: the oldest whose internals GradWatch relies on (see
# gradwatch/keras_internals.py, checked by tests/test_keras_contract.py).
# JAX: the oldest whose tracers carry their trace (`capture_jax._of_step`).
JAX = "jax>=0.4.36"

install_requires = ["numpy>=1.23", "tensorboard>=2.16", "keras>=3.7"]
if not os.environ.get("GRADWATCH_SKIP_TF_DEP"):
    install_requires.append("tensorflow>=2.18")  # The oldest CI tests.

setup(
    name="gradwatch",
    version="0.1.0",
    description=(
        "Per-layer training-health statistics for Keras, live in TensorBoard."
    ),
    long_description=open("README.md", encoding="utf-8").read()
    if os.path.exists("README.md")
    else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["gradwatch", "gradwatch.*"]) + ["gradwatch_tensorboard"],
    package_dir={"gradwatch_tensorboard": "tensorboard_plugin"},
    package_data={"gradwatch_tensorboard": ["static/*"]},
    install_requires=install_requires,
    extras_require={
        # Optional: `Recording.to_frame()` and `Recording.plot()`.
        "pandas": ["pandas>=1.5"],
        "plot": ["matplotlib>=3.6"],
        # Keras' JAX backend (KERAS_BACKEND=jax); the CPU build from PyPI.
        "jax": [JAX],
        "test": ["pytest>=7", "playwright>=1.40", "hypothesis>=6",
                 "pandas>=1.5", "matplotlib>=3.6", JAX],
    },
    entry_points={
        "tensorboard_plugins": [
            "gradwatch = gradwatch_tensorboard.loader:GradWatchLoader",
        ],
    },
)
