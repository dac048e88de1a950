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

from gradwatch.callback import DEFAULT_UPDATE_FREQ, GradWatch
from gradwatch.reader import Recording, load
from gradwatch_tensorboard.metadata import METRIC_NAMES, METRICS

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_UPDATE_FREQ",
    "GradWatch",
    "METRICS",
    "METRIC_NAMES",
    "Recording",
    "load",
]
