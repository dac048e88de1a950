"""gradwatch: see vanishing gradients, saturation, dead units and BatchNorm
skew while a Keras model trains.

Example:

```python
import gradwatch
model.fit(x, y, callbacks=[gradwatch.GradWatch("runs/exp1")])
run = gradwatch.load("runs/exp1")
run.metric("gradient_var")  # [steps, layers]
```
"""

from gradwatch.reader import Recording, load
from gradwatch_tensorboard.metadata import METRIC_NAMES, METRICS

__version__ = "0.1.0"

# Reading a log dir (`load`, `python -m gradwatch report`) needs no
# TensorFlow; only the callback does, so it is imported on first use.
_LAZY = {"GradWatch", "DEFAULT_UPDATE_FREQ", "DEFAULT_HISTOGRAM_FREQ"}


def __getattr__(name):
    if name in _LAZY:
        from gradwatch import callback

        return getattr(callback, name)
    raise AttributeError(f"module 'gradwatch' has no attribute {name!r}")

__all__ = [
    "DEFAULT_HISTOGRAM_FREQ",
    "DEFAULT_UPDATE_FREQ",
    "GradWatch",
    "METRICS",
    "METRIC_NAMES",
    "Recording",
    "load",
]
