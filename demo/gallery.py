"""A gallery of small models, each showing one lesson of training health.

Every run trains a deep, narrow MLP on the same synthetic task with
`gradwatch.GradWatch` attached, into its own sub-directory of one log dir, so
TensorBoard shows the runs side by side. `GALLERY` defines the runs;
`run_gallery` trains them and returns one `RunSummary` per run, the numbers
that show each run's lesson; `format_table` prints them.

The task (see `make_task`): 32 standard-normal input features, and 8 classes
given by the argmax of a fixed, seeded random "teacher" network (two tanh
layers of 64 units, then a linear read-out). Labels are a smooth but
nonlinear function of all inputs, so a student must actually learn features;
nothing is downloaded, and the same seed gives the same data everywhere.

Example:

```python
from demo import gallery
rows = gallery.run_gallery("runs/gallery", quick=True,
                           names=["03_relu_he_init"])
print(gallery.format_table(rows))
```
"""

import dataclasses
import functools
import math
import os
import shutil
import time

import numpy as np

# The task and the students.
INPUT_DIM = 32
CLASSES = 8
DEPTH = 8  # hidden layers
QUICK_DEPTH = 6
WIDTH = 128
BATCH_SIZE = 64
DATA_SEED = 0
MODEL_SEED = 1
# Full mode: 3 epochs of 64 steps, a record every 8 steps (25 records).
SAMPLES = 4096
EPOCHS = 3
UPDATE_FREQ = 8
# Quick mode (tests): by default only the runs whose lesson the tests check,
# with 6 hidden layers, 48 steps and a record every 4 steps. Most of a short
# run's time is fixed (building, tracing GradWatch's instrumented step,
# about 3-5 s here), hence the fewer runs; every lesson already shows at
# depth 6, with smaller magnitudes.
QUICK_RUNS = (
    "01_sigmoid_standard_init",
    "03_relu_he_init",
    "04_relu_high_lr_dying",
    "07_selu_lecun_normal",
    "10_relu_large_init_exploding",
    "11_relu_large_init_clipnorm",
    "12_sigmoid_unit_normal_saturating",
)
QUICK_SAMPLES = 3072
QUICK_EPOCHS = 1
QUICK_UPDATE_FREQ = 4
# How many of the last records the backward-variance ratio is a median of.
RATIO_WINDOW = 5

# The default optimizer of the gallery: plain SGD with momentum, so that
# vanishing and exploding gradients show up in training speed too (an
# adaptive optimizer such as Adam would rescale them away).
BASE_LEARNING_RATE = 0.01
MOMENTUM = 0.9
# 15x the base rate: large updates push most ReLU units of the upper layers
# into the region where they never fire again, yet training does not diverge.
HIGH_LEARNING_RATE = 0.15
# Six times He's variance (12 / fan_in): each ReLU layer multiplies the
# forward and the backward variance by about 6. (At 4x, a 6-layer net's first
# updates kill whole layers instead of overflowing: a different failure.)
EXPLODING_SCALE = 12.0
CLIPNORM = 1.0
# The BatchNorm runs watch only their BN layers (and the read-out): a BN
# layer's batch statistics describe its input, the layer before it, and
# GradWatch's tracing time grows with every watched layer.
BN_WATCH = ("*_bn", "logits")


# -- the task -----------------------------------------------------------------


def make_task(samples=SAMPLES, seed=DATA_SEED):
    """The synthetic classification task every run trains on.

    Inputs are standard normal, then standardised per feature on the sample
    (so their mean is exactly 0 and variance exactly 1, as SELU's
    self-normalisation requires). Labels are the argmax of a seeded random
    teacher network: `tanh(tanh(x W1) W2) W3` with 64-unit hidden layers.

    Args:
        samples: Number of examples.
        seed: Seed of the numpy generator that draws inputs and teacher.

    Returns:
        `(x, y)`: float32 `[samples, INPUT_DIM]` and int32 `[samples]` in
        `[0, CLASSES)`.
    """
    rng = np.random.default_rng(seed)
    # The teacher first, so that it does not depend on `samples`.
    teacher = []
    fan_in = INPUT_DIM
    for width in (64, 64, CLASSES):
        # Gain 2 on the hidden layers keeps the tanh units nonlinear.
        gain = 2.0 if width != CLASSES else 1.0
        teacher.append(rng.standard_normal((fan_in, width)) * np.sqrt(gain / fan_in))
        fan_in = width
    x = rng.standard_normal((samples, INPUT_DIM))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    hidden = x
    for w in teacher[:-1]:
        hidden = np.tanh(hidden @ w)
    y = np.argmax(hidden @ teacher[-1], axis=1)
    return x.astype(np.float32), y.astype(np.int32)


# -- the students -------------------------------------------------------------


def _keras():
    # Imported lazily so that `import demo.gallery` (and the spec list) stays
    # cheap, e.g. for `python -m demo --help`.
    import keras

    return keras


def standard_uniform(fan_in):
    """The "standard" initialisation U(-1/sqrt(n), 1/sqrt(n)), n = fan_in.

    Its variance is 1/(3n): a third of LeCun's. Glorot & Bengio (2010) used it
    as the baseline that makes deep sigmoid networks vanish.
    """
    keras = _keras()
    limit = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-limit, limit)


def mlp(activation, initializer, norm=None, depth=DEPTH, width=WIDTH):
    """A plain stack of `depth` hidden layers and a linear 8-way read-out.

    Layers are named `hidden_01` ... and `logits` so TensorBoard rows read in
    depth order.

    Args:
        activation: Activation name for the hidden layers (a Keras string).
        initializer: `fan_in -> keras initializer` for each hidden kernel.
        norm: None; `"before"` for Dense -> BatchNormalization -> activation;
            `"after"` for Dense(activation) -> BatchNormalization.
        depth: Number of hidden layers.
        width: Units per hidden layer.

    Returns:
        An uncompiled `keras.Sequential`.
    """
    keras = _keras()
    layers = keras.layers
    stack = [keras.Input((INPUT_DIM,))]
    fan_in = INPUT_DIM
    for i in range(1, depth + 1):
        name = f"hidden_{i:02d}"
        if norm == "before":
            # BN's beta makes the Dense bias redundant.
            stack += [
                layers.Dense(
                    width,
                    use_bias=False,
                    kernel_initializer=initializer(fan_in),
                    name=name,
                ),
                layers.BatchNormalization(name=f"{name}_bn"),
                layers.Activation(activation, name=f"{name}_act"),
            ]
        else:
            stack.append(
                layers.Dense(
                    width,
                    activation=activation,
                    kernel_initializer=initializer(fan_in),
                    name=name,
                )
            )
            if norm == "after":
                stack.append(layers.BatchNormalization(name=f"{name}_bn"))
        fan_in = width
    stack.append(layers.Dense(CLASSES, name="logits"))
    return keras.Sequential(stack)


def unit_normal(fan_in):
    """`fan_in -> N(0, 1)`: weights of unit variance, whatever the fan-in."""
    del fan_in
    return _keras().initializers.RandomNormal(stddev=1.0)


def keras_initializer(name):
    """`fan_in -> name`: a Keras initializer by name, which reads the fans
    from the kernel's shape itself."""
    return lambda fan_in: name


def he_scaled(scale):
    """`fan_in -> VarianceScaling(scale, "fan_in")`: weight variance
    scale / fan_in (He is scale 2), normal and untruncated."""

    def make(fan_in):
        del fan_in  # VarianceScaling reads it from the kernel's shape.
        return _keras().initializers.VarianceScaling(
            scale, mode="fan_in", distribution="untruncated_normal"
        )

    return make


def sgd(learning_rate=BASE_LEARNING_RATE, **kwargs):
    """SGD with the gallery's momentum; extra kwargs go to the optimizer."""
    return _keras().optimizers.SGD(learning_rate, momentum=MOMENTUM, **kwargs)


# -- the gallery --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the gallery.

    Attributes:
        name: Run name: its sub-directory of the log dir and its TensorBoard
            run name.
        lesson: One sentence: what the run demonstrates.
        look_at: What to look at in TensorBoard to see it.
        build: `depth -> uncompiled keras.Model` with `depth` hidden layers.
        optimizer: `() -> keras optimizer`.
        watch: Optional GradWatch `layers=` patterns; default every layer
            with weights or a nonlinearity.
    """

    name: str
    lesson: str
    look_at: str
    build: object
    optimizer: object
    watch: tuple = None


GALLERY = (
    RunSpec(
        "01_sigmoid_standard_init",
        "Deep sigmoid net with the old 'standard' init U(+-1/sqrt(n)): the "
        "weights are too small for sigmoid's slope (f' <= 1/4), so the "
        "backward variance shrinks ~48x per layer and the net does not learn.",
        "gradient_var: the first layer ~12 orders of magnitude below the "
        "last. activation_mean ~0.5 and tiny activation_var everywhere: the "
        "sigmoids sit in their linear middle (not saturated). Loss stays at "
        "ln 8 = 2.08.",
        functools.partial(mlp, "sigmoid", standard_uniform),
        sgd,
    ),
    RunSpec(
        "02_sigmoid_glorot_init",
        "The same net with Glorot init: right for a linear layer, but "
        "sigmoid's f' <= 1/4 still costs 16x of backward variance per layer.",
        "gradient_var against run 01: the same slope toward the input, less "
        "steep (~16x instead of ~48x per layer); still vanishing.",
        functools.partial(mlp, "sigmoid", keras_initializer("glorot_uniform")),
        sgd,
    ),
    RunSpec(
        "03_relu_he_init",
        "ReLU with He init: forward and backward variance stay within a small "
        "factor from layer to layer. The healthy baseline.",
        "activation_var and gradient_var flat across depth; activation_gain "
        "near 1; dead_fraction low (a few units idle on a batch).",
        functools.partial(mlp, "relu", keras_initializer("he_normal")),
        sgd,
    ),
    RunSpec(
        "04_relu_high_lr_dying",
        "The baseline with a 15x learning rate: large updates push ReLU units "
        "to a negative pre-activation for every input, where they output 0 "
        "and get no gradient.",
        "dead_fraction and dead_units_window: most units of the upper layers "
        "dead within the first few dozen steps. gradient_var falls toward the "
        "input: dead units pass no gradient either.",
        functools.partial(mlp, "relu", keras_initializer("he_normal")),
        lambda: sgd(HIGH_LEARNING_RATE),
    ),
    RunSpec(
        "05_leaky_relu_0.2",
        "Leaky ReLU (negative slope 0.2) with He init: no unit can die, since "
        "the negative side still passes 20% of the gradient.",
        "dead_fraction does not apply (no floor): compare run 04. "
        "gradient_var flat across depth; the lowest loss of the ReLU family "
        "here after ELU.",
        # Keras' "leaky_relu" activation has negative_slope=0.2.
        functools.partial(mlp, "leaky_relu", keras_initializer("he_normal")),
        sgd,
    ),
    RunSpec(
        "06_elu",
        "ELU with He init: smooth, with a negative tail that pulls mean "
        "activations toward 0.",
        "activation_mean closer to 0 than ReLU's (run 03); "
        "saturation_fraction: only the far negative tail is flat.",
        functools.partial(mlp, "elu", keras_initializer("he_normal")),
        sgd,
    ),
    RunSpec(
        "07_selu_lecun_normal",
        "SELU with lecun_normal init on standardised inputs: self-"
        "normalising, every hidden layer starts at mean ~0 and variance ~1.",
        "activation_mean ~0 and activation_var ~1 in every hidden layer at "
        "step 0; both drift slowly (variance up to ~2 here) as training moves "
        "the weights away from the LeCun distribution.",
        functools.partial(mlp, "selu", keras_initializer("lecun_normal")),
        sgd,
    ),
    RunSpec(
        "08_batchnorm_before_sigmoid",
        "Run 01's net with BatchNormalization before each sigmoid: every "
        "pre-activation is re-standardised, and the gradient reaches the "
        "first layer.",
        "gradient_var of the _bn layers against run 01: no vanishing, even a "
        "mild growth toward the input (BN divides the gradient by its input's "
        "small std). bn_batch_var: the Dense outputs' variance; bn_skew: "
        "batch vs moving statistics.",
        functools.partial(mlp, "sigmoid", standard_uniform, norm="before"),
        sgd,
        watch=BN_WATCH,
    ),
    RunSpec(
        "09_batchnorm_after_sigmoid",
        "The same with BatchNormalization after each sigmoid: it standardises "
        "the sigmoid outputs for the next layer, which also keeps the "
        "gradient alive.",
        "bn_batch_mean ~0.5 and a tiny bn_batch_var: the sigmoid outputs each "
        "BN layer standardises. gradient_var of the _bn layers flat across "
        "depth.",
        functools.partial(mlp, "sigmoid", standard_uniform, norm="after"),
        sgd,
        watch=BN_WATCH,
    ),
    RunSpec(
        "10_relu_large_init_exploding",
        "Deep ReLU with 6x He's variance: forward and backward variance grow "
        "~6x per layer, the first updates are huge and SGD diverges to NaN.",
        "Step 0: activation_var growing ~6x per layer with depth, "
        "gradient_var growing ~6x per layer toward the input, update_ratio "
        "far above 1 on the read-out. Then NaN everywhere "
        "(activation_nonfinite, gradient_nonfinite).",
        functools.partial(mlp, "relu", he_scaled(EXPLODING_SCALE)),
        sgd,
    ),
    RunSpec(
        "11_relu_large_init_clipnorm",
        "The same with clipnorm=1: each kernel's update is bounded, so "
        "training stays finite and the gradients come down. Clipping treats "
        "the symptom: the init is still wrong.",
        "gradient_norm (measured before clipping) falling steadily from its "
        "step-0 value; update_ratio ~1e-3 (lr x clipnorm / |W|); no "
        "non-finite values; the loss coming down from ~2000. activation_var "
        "still grows with depth.",
        functools.partial(mlp, "relu", he_scaled(EXPLODING_SCALE)),
        lambda: sgd(clipnorm=CLIPNORM),
    ),
    RunSpec(
        "12_sigmoid_unit_normal_saturating",
        "Deep sigmoid with N(0, 1) weights, the seed's first lesson: each "
        "pre-activation sums 128 inputs with unit weights, so its spread is "
        "~10x sigmoid's active range and the units pile up at 0 and 1, where "
        "f' is ~0.",
        "saturation_fraction: most of every hidden layer from step 0. The "
        "distribution view of a hidden layer: two spikes, at +1e-1..1e0 (near "
        "1) and at the small positive decades (near 0). unit_saturation: "
        "which units sit in the flat region.",
        functools.partial(mlp, "sigmoid", unit_normal),
        sgd,
    ),
)

RUN_NAMES = tuple(spec.name for spec in GALLERY)


def get_spec(name):
    """The `RunSpec` called `name` (KeyError listing the names otherwise)."""
    for spec in GALLERY:
        if spec.name == name:
            return spec
    raise KeyError(f"No gallery run {name!r}. Runs: {', '.join(RUN_NAMES)}")


# -- running ------------------------------------------------------------------


@dataclasses.dataclass
class RunSummary:
    """The numbers that show one run's lesson.

    "At the end" means the last recorded step. Range statistics are over the
    hidden layers (every watched layer but `logits`).

    Attributes:
        name: The run's name.
        log_dir: Where its GradWatch record is (`gradwatch.load(log_dir)`).
        seconds: Wall time of the run (build, compile, trace and train).
        depth: Hidden layers of its model.
        steps: Training steps run.
        saturation_max: Worst saturation_fraction over layers at the end (NaN
            if no layer saturates, e.g. ReLU).
        dead_fraction_max: Worst dead_fraction over layers at the end (NaN
            for activations without a floor).
        grad_var_ratio: The first-to-last gradient variance ratio of the
            main chain (`backward_ratios`), median over the last
            `RATIO_WINDOW` records where it is finite.
        act_mean_range: `(min, max)` of activation_mean over hidden layers at
            the end.
        act_var_range: `(min, max)` of activation_var over hidden layers at
            the end.
        final_loss: Mean training loss of the last epoch.
        first_nonfinite: GradWatch's `{"step", "layer", "kind"}` of the first
            NaN/Inf, or None.
    """

    name: str
    log_dir: str
    seconds: float
    depth: int
    steps: int
    saturation_max: float
    dead_fraction_max: float
    grad_var_ratio: float
    act_mean_range: tuple
    act_var_range: tuple
    final_loss: float
    first_nonfinite: object = None


def _nanrange(values):
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (math.nan, math.nan)
    return (float(finite.min()), float(finite.max()))


def backward_ratios(recording):
    """Backward variance ratio, first over last layer of the main chain, at
    every record: `gradwatch.findings.gradient_var_ratio`, the one definition
    the findings and the headline scalar use too. In the gallery the main chain is
    the hidden layers of one kind (`hidden_01` to `hidden_06`, or their BN
    layers), not the read-out, whose 8 outputs make its gradient variance
    incomparable with a hidden layer's. Below 1, gradients shrink on their
    way down to the input; above 1, they grow.

    Args:
        recording: A `gradwatch.Recording` of a gallery run.

    Returns:
        A float array over `recording.steps` (NaN where either is missing).
    """
    from gradwatch import findings

    return findings.gradient_var_ratio(recording)[1]


def summarise(recording, final_loss, seconds, depth, name=None):
    """Reduces a GradWatch recording to a `RunSummary`.

    Args:
        recording: A `gradwatch.Recording`.
        final_loss: The run's last training loss.
        seconds: The run's wall time.
        depth: Hidden layers of the run's model.
        name: Run name; defaults to the log dir's base name.

    Returns:
        A `RunSummary`.
    """
    from gradwatch.findings.arrays import nanmax

    layers = recording.layers
    hidden = [i for i, layer in enumerate(layers) if layer != "logits"]
    last = -1
    # A run that diverged has NaN ratios at the end: take the last finite
    # ones, which show why it diverged.
    ratios = backward_ratios(recording)
    window = ratios[np.isfinite(ratios)][-RATIO_WINDOW:]
    ratio = float(np.median(window)) if window.size else math.nan
    mean = recording.metric("activation_mean")[last, hidden]
    var = recording.metric("activation_var")[last, hidden]
    return RunSummary(
        name=name or os.path.basename(os.path.normpath(recording.log_dir)),
        log_dir=recording.log_dir,
        seconds=seconds,
        depth=depth,
        steps=int(recording.steps[-1]) + 1,
        saturation_max=nanmax(recording.metric("saturation_fraction")[last]),
        dead_fraction_max=nanmax(recording.metric("dead_fraction")[last]),
        grad_var_ratio=ratio,
        act_mean_range=_nanrange(mean),
        act_var_range=_nanrange(var),
        final_loss=float(final_loss),
        first_nonfinite=recording.first_nonfinite,
    )


def train_run(spec, logdir, quick=False):
    """Trains one gallery run with GradWatch attached.

    Args:
        spec: A `RunSpec`.
        logdir: The gallery's log dir; the run goes to `logdir/spec.name`.
        quick: Few steps, for tests.

    Returns:
        A `RunSummary`.
    """
    keras = _keras()
    import gradwatch

    start = time.perf_counter()
    run_dir = os.path.join(os.fspath(logdir), spec.name)
    # The gallery owns its run dirs: running it again replaces them (a
    # GradWatch would otherwise write the new run beside the old one).
    shutil.rmtree(run_dir, ignore_errors=True)
    x, y = make_task(QUICK_SAMPLES if quick else SAMPLES)
    # Every run starts from the same seed: differences come from the spec.
    keras.utils.set_random_seed(MODEL_SEED)
    depth = QUICK_DEPTH if quick else DEPTH
    model = spec.build(depth=depth)
    model.compile(
        optimizer=spec.optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # On models this small, XLA compilation costs more time than it saves.
        jit_compile=False,
    )
    watch = gradwatch.GradWatch(
        run_dir,
        update_freq=QUICK_UPDATE_FREQ if quick else UPDATE_FREQ,
        layers=list(spec.watch) if spec.watch else None,
        verbose=0,
        # Short runs: distributions every other record, so that their views
        # show how they change (GradWatch's default is every 256 steps).
        histogram_freq=2 * (QUICK_UPDATE_FREQ if quick else UPDATE_FREQ),
    )
    history = model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=QUICK_EPOCHS if quick else EPOCHS,
        shuffle=True,
        verbose=0,
        callbacks=[watch],
    )
    final_loss = history.history["loss"][-1]
    seconds = time.perf_counter() - start
    return summarise(
        gradwatch.load(watch.log_dir), final_loss, seconds, depth, spec.name
    )


def run_gallery(logdir, quick=False, names=None, progress=None):
    """Trains the gallery's runs into `logdir`, one sub-directory each.

    Args:
        logdir: The gallery's log dir (created if missing).
        quick: Few steps on shallower nets, for tests.
        names: Optional iterable of run names; default all of `GALLERY`, or
            `QUICK_RUNS` when `quick`.
        progress: Optional `(index, total, summary)` callback, called as each
            run finishes.

    Returns:
        A list of `RunSummary`, in the order run.
    """
    if names is None:
        names = QUICK_RUNS if quick else RUN_NAMES
    specs = [get_spec(name) for name in names]
    os.makedirs(logdir, exist_ok=True)
    summaries = []
    for index, spec in enumerate(specs, start=1):
        summaries.append(train_run(spec, logdir, quick))
        if progress is not None:
            progress(index, len(specs), summaries[-1])
    return summaries


# -- reporting ----------------------------------------------------------------


def _number(value, digits=2):
    if value is None or not math.isfinite(value):
        return "nan" if value is not None and math.isnan(value) else str(value)
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e4):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _range(pair):
    low, high = pair
    return f"{_number(low)} .. {_number(high)}"


TABLE_COLUMNS = (
    "run",
    "saturation max",
    "dead frac max",
    "grad var first/last",
    "act mean range",
    "act var range",
    "final loss",
    "non-finite",
    "findings",
)


def _findings_cell(log_dir):
    """The run's findings (`gradwatch.findings`): warnings, then (info)."""
    import gradwatch

    found = gradwatch.load(log_dir).findings()
    return ", ".join(
        f.rule if f.severity == "warning" else f"({f.rule})" for f in found
    ) or "-"


def table_rows(summaries):
    """The summary table as lists of strings, one per run."""
    rows = []
    for s in summaries:
        nonfinite = (
            f"step {s.first_nonfinite['step']}" if s.first_nonfinite else "-"
        )
        rows.append(
            [
                s.name,
                _number(s.saturation_max),
                _number(s.dead_fraction_max),
                _number(s.grad_var_ratio),
                _range(s.act_mean_range),
                _range(s.act_var_range),
                _number(s.final_loss, 3),
                nonfinite,
                _findings_cell(s.log_dir),
            ]
        )
    return rows


def format_table(summaries):
    """A plain-text table of `RunSummary` rows, columns aligned.

    Columns: worst saturation and dead fraction over layers at the end;
    backward variance ratio first/last layer of the main chain (median of
    the last records);
    activation mean and variance range over hidden layers at the end; final
    loss; step of the first non-finite value; GradWatch's findings
    (warnings, then info in brackets).
    """
    rows = [list(TABLE_COLUMNS)] + table_rows(summaries)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
