"""How much GradWatch slows `fit` down, reported the way Cockpit reported its
own overhead: time relative to a plain `fit`, per model, per tracking interval.

Usage (from the repository root):

    python -m benchmarks.overhead                   # every model, 5 rounds
    python -m benchmarks.overhead --models mlp_20x256_bn --rounds 3
    python -m benchmarks.overhead --quick            # a smoke run, ~30 s
    python -m benchmarks.overhead --out results.json

Method. Everything runs in one process. For each model, every condition
(plain `fit`; GradWatch recording every 1, 4, 16, 64 steps and at its default;
Keras' own `TensorBoard(histogram_freq=1)`) gets its own freshly built and
compiled copy of the model, trained by one `fit` call in its own thread. The
threads never run at once: they take turns, one epoch of `STEPS_PER_ROUND`
steps per turn. Epoch 0 of each is a warm-up, which traces the train
functions (Keras' own and GradWatch's instrumented copy) and is left out of
the timing; so is the first interleaved round after it (see
`DISCARDED_ROUNDS`). Then come the rounds: in each, every condition trains
one timed epoch, in a freshly shuffled order, so that the machine's slow
spells fall on all conditions alike. A cell of the table is the median over
rounds of (that condition's epoch time / plain `fit`'s epoch time in the same
round). Each round is a whole number of recording periods (64 steps), so
every round of "every 64" holds exactly one recorded step.

Times are wall-clock (`time.perf_counter`): this is what a user waits. The
machine this was written on is shared and noisy: other tenants took the CPU
away for seconds at a time, stretching single 0.5 s epochs to 10 s. So the
report gives a second table in process CPU time (`time.process_time`, which
such stalls do not inflate; only one worker runs at a time, so it is that
worker's cost plus TensorFlow's and the writers' background threads).
Compare medians of many interleaved rounds, never single runs.

Memory is the process-wide resident set (`VmRSS`/`VmHWM` in
/proc/self/status; TensorFlow allocates outside Python, so `tracemalloc` sees
none of it). Its peak is reset before each timed epoch (writing 5 to
/proc/self/clear_refs), so "peak" is the largest RSS reached during one
condition's epochs minus the RSS at their start.
"""

import argparse
import dataclasses
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gradwatch  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import machine as machine_info  # noqa: E402

# Steps per timed round: a multiple of every tracking interval measured.
STEPS_PER_ROUND = 64
# Untimed epochs in the turn that builds each model: they trace the train
# functions (Keras' own and GradWatch's instrumented copy).
WARMUP_EPOCHS = 1
# Interleaved rounds run and thrown away before the timed ones: the first
# round after the warm-ups still costs more CPU than later ones (measured
# here: +50-200% on a tiny MLP, with or without GradWatch).
DISCARDED_ROUNDS = 1
DEFAULT_ROUNDS = 5
# The targets, as CPU-time ratios to plain `fit`: every step, by model (the
# rest: none), every 4 steps and the default cadence on every model.
TARGETS_EVERY_STEP = {"mlp_20x256_bn": 1.3, "cnn_bn": 1.6, "mobilenet_v2": 1.6}
TARGET_EVERY_4 = 1.1
TARGET_DEFAULT = 1.02
INTERVALS = (1, 4, 16, 64)


# -- conditions ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Condition:
    """One way of running `fit`.

    Attributes:
        key: Short identifier (`plain`, `every_4`, `tensorboard`...).
        label: Column header.
        update_freq: GradWatch's interval, or None without GradWatch.
        tensorboard: Whether Keras' TensorBoard callback is attached.
        histogram_freq: GradWatch's distribution interval (None: its
            default).
    """

    key: str
    label: str
    update_freq: object = None
    tensorboard: bool = False
    histogram_freq: object = None

    def callbacks(self, log_dir):
        """The callbacks of this condition, writing under `log_dir`."""
        if self.update_freq is not None:
            extra = {} if self.histogram_freq is None else {"histogram_freq": self.histogram_freq}
            return [
                gradwatch.GradWatch(
                    log_dir, update_freq=self.update_freq, verbose=0, **extra
                )
            ]
        if self.tensorboard:
            return [keras.callbacks.TensorBoard(log_dir, histogram_freq=1)]
        return []


def all_conditions():
    """Plain, GradWatch at every interval and its default, TensorBoard.

    The default interval is measured once even when it equals one of
    `INTERVALS`; the table then repeats that column's numbers.
    """
    conditions = [Condition("plain", "plain fit")]
    for k in INTERVALS:
        conditions.append(Condition(f"every_{k}", f"every {k}", update_freq=k))
    default = gradwatch.DEFAULT_UPDATE_FREQ
    if default not in INTERVALS:
        conditions.append(
            Condition("default", f"default ({default})", update_freq=default)
        )
    # The distributions' own cost: measured at every step, since a round
    # (64 steps) is shorter than their default interval.
    conditions.append(
        Condition("distributions_1", "every 1 + distributions", update_freq=1, histogram_freq=1)
    )
    conditions.append(
        Condition("tensorboard", "Keras TensorBoard", tensorboard=True)
    )
    return conditions


def default_key():
    """The condition key that holds GradWatch's default interval."""
    default = gradwatch.DEFAULT_UPDATE_FREQ
    return f"every_{default}" if default in INTERVALS else "default"


# -- models -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model to benchmark.

    Attributes:
        key: Identifier for `--models`.
        label: Row header.
        build: `() -> uncompiled keras.Model`.
        input_shape: Shape of one example.
        batch_size: Batch size.
        conditions: Condition keys to measure (None: all). The depth sweep
            and MobileNetV2 measure fewer: tracing GradWatch's instrumented
            step for 200 layers takes over a minute here, once per condition.
        jit_compile: Passed to `compile`; Keras' default "auto" means XLA on
            the CPU too.
    """

    key: str
    label: str
    build: object
    input_shape: tuple
    batch_size: int = 64
    conditions: tuple = None
    jit_compile: object = "auto"


def _mlp_bn():
    layers = keras.layers
    stack = [keras.Input((128,))]
    for _ in range(20):
        stack += [
            layers.Dense(256, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
        ]
    return keras.Sequential(stack + [layers.Dense(10)])


def _cnn_bn():
    layers = keras.layers
    stack = [keras.Input((32, 32, 3))]
    for filters in (16, 16, None, 32, 32, None):
        if filters is None:
            stack.append(layers.MaxPooling2D())
        else:
            stack += [
                layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(),
                layers.ReLU(),
            ]
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(10)]
    return keras.Sequential(stack)


def _mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3),
        alpha=0.35,
        weights=None,
        classes=10,
        classifier_activation=None,
    )


def _relu_mlp(depth, width=64, input_dim=64):
    def build():
        stack = [keras.Input((input_dim,))]
        stack += [
            keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")
            for _ in range(depth)
        ]
        return keras.Sequential(stack + [keras.layers.Dense(10)])

    return build


_SWEEP = ("plain", "every_1", "default")
MODELS = {
    spec.key: spec
    for spec in (
        ModelSpec("mlp_20x256_bn", "MLP 20x256 + BN", _mlp_bn, (128,)),
        ModelSpec("cnn_bn", "CNN 4 conv + BN, 32x32x3", _cnn_bn, (32, 32, 3), 32),
        ModelSpec(
            "mobilenet_v2",
            "MobileNetV2 (a=0.35), 32x32x3",
            _mobilenet_v2,
            (32, 32, 3),
            32,
            conditions=("plain", "every_1", "every_4", "default", "tensorboard"),
        ),
        ModelSpec("relu_mlp_10", "ReLU MLP 10x64", _relu_mlp(10), (64,),
                  conditions=_SWEEP),
        ModelSpec("relu_mlp_50", "ReLU MLP 50x64", _relu_mlp(50), (64,),
                  conditions=_SWEEP),
        ModelSpec("relu_mlp_200", "ReLU MLP 200x64", _relu_mlp(200), (64,),
                  conditions=_SWEEP),
    )
}
# --quick: a tiny model for the smoke test.
QUICK_MODEL = ModelSpec(
    "tiny_mlp", "tiny MLP 3x32", _relu_mlp(3, 32, 16), (16,), 32,
    jit_compile=False,  # XLA compilation would dominate a smoke run
)
QUICK_STEPS_PER_ROUND = 16


# -- memory -------------------------------------------------------------------


def _reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


# -- taking turns -------------------------------------------------------------


class _Turns:
    """Lets one worker thread run at a time, the one the main thread names."""

    def __init__(self):
        self._cond = threading.Condition()
        self._holder = None

    def wait(self, name):
        with self._cond:
            self._cond.wait_for(lambda: self._holder == name)

    def release(self, name):
        with self._cond:
            if self._holder == name:
                self._holder = None
                self._cond.notify_all()

    def give(self, name, worker):
        """Hands the turn to `name` and waits until it is handed back."""
        with self._cond:
            self._holder = name
            self._cond.notify_all()
            while self._holder is not None:
                self._cond.wait(timeout=1.0)
                if self._holder is not None and not worker.is_alive():
                    raise RuntimeError(f"{name} stopped: {worker.error!r}")
        if worker.error is not None:
            raise RuntimeError(f"{name} failed") from worker.error


class _Worker(threading.Thread):
    """Trains one model under one condition, one epoch per turn.

    The first turn builds and compiles the model and trains the warm-up
    epochs; each later turn trains one timed epoch (the last one also ends
    `fit`).
    """

    def __init__(self, spec, condition, data, rounds, turns, log_dir, seed):
        super().__init__(name=f"{spec.key}/{condition.key}", daemon=True)
        self.spec = spec
        self.condition = condition
        self.data = data
        self.rounds = rounds
        self.turns = turns
        self.log_dir = log_dir
        self.seed = seed
        self.error = None
        self.model = None
        self.warmup_seconds = None
        self.warmup_rss_kb = None
        self.epoch_seconds = []
        self.epoch_cpu_seconds = []
        self.epoch_peak_kb = []
        self._start = None
        self._warmup = None
        self._rss_at_start = None

    def run(self):
        self.turns.wait(self.name)
        try:
            start, rss = time.perf_counter(), machine_info.status_kb("VmRSS")
            keras.utils.set_random_seed(self.seed)
            model = self.spec.build()
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=self.spec.jit_compile,
            )
            self._warmup = (start, rss)
            self.model = model
            x, y = self.data
            model.fit(
                x,
                y,
                batch_size=self.spec.batch_size,
                epochs=WARMUP_EPOCHS + self.rounds,  # rounds incl. discarded
                shuffle=False,
                verbose=0,
                callbacks=[_EpochStart(self)]
                + self.condition.callbacks(self.log_dir)
                + [_EpochEnd(self)],
            )
        except BaseException as e:  # reported by _Turns.give
            self.error = e
        finally:
            self.turns.release(self.name)

    def epoch_begin(self, epoch):
        if epoch >= WARMUP_EPOCHS:  # warm-ups run in the building turn
            self.turns.wait(self.name)
            _reset_peak_rss()
            self._rss_at_start = machine_info.status_kb("VmRSS")
        self._start = (time.perf_counter(), time.process_time())

    def epoch_end(self, epoch):
        wall = time.perf_counter() - self._start[0]
        cpu = time.process_time() - self._start[1]
        if epoch < WARMUP_EPOCHS - 1:
            return
        if epoch == WARMUP_EPOCHS - 1:
            start, rss = self._warmup
            self.warmup_seconds = time.perf_counter() - start
            now = machine_info.status_kb("VmRSS")
            self.warmup_rss_kb = now - rss if None not in (now, rss) else None
        else:
            self.epoch_seconds.append(wall)
            self.epoch_cpu_seconds.append(cpu)
            peak = machine_info.status_kb("VmHWM")
            if None not in (peak, self._rss_at_start):
                self.epoch_peak_kb.append(peak - self._rss_at_start)
        if epoch < WARMUP_EPOCHS - 1 + self.rounds:
            # The last turn ends when fit returns.
            self.turns.release(self.name)


class _EpochStart(keras.callbacks.Callback):
    """First in the callback list: starts the clock before the others."""

    def __init__(self, worker):
        super().__init__()
        self.worker = worker

    def on_epoch_begin(self, epoch, logs=None):
        self.worker.epoch_begin(epoch)


class _EpochEnd(keras.callbacks.Callback):
    """Last in the callback list: stops the clock after the others
    (TensorBoard writes its histograms in `on_epoch_end`)."""

    def __init__(self, worker):
        super().__init__()
        self.worker = worker

    def on_epoch_end(self, epoch, logs=None):
        self.worker.epoch_end(epoch)


# -- the floor ----------------------------------------------------------------


class Floor:
    """The least a recorded step can cost here: one read of every watched
    tensor, forward and backward (a sum over each of them, XLA-compiled), on
    tensors of the watched layers' output shapes at this batch size.

    Args:
        model: The built model.
        batch_size: Its batch size.
        calls: Calls timed per round.
    """

    def __init__(self, model, batch_size, calls=16):
        import tensorflow as tf

        from gradwatch import selection

        shapes = []
        for _, layer in selection.select_layers(model):
            try:
                shape = layer.output.shape
            except (AttributeError, ValueError):
                continue
            shapes.append((batch_size, *shape[1:]))
        rng = np.random.default_rng(0)
        # Forward (the outputs) and backward (dLoss/d(output)): two of each.
        self.tensors = [
            tf.constant(rng.standard_normal(shape).astype(np.float32))
            for shape in shapes + shapes
        ]
        self.function = tf.function(
            lambda tensors: [tf.reduce_sum(t) for t in tensors], jit_compile=True
        )
        self.calls = calls
        self.cpu_seconds = []
        self.wall_seconds = []
        self.function(self.tensors)  # Compile.

    def time(self):
        """Times `calls` calls; keeps the per-call CPU and wall seconds."""
        start = (time.perf_counter(), time.process_time())
        for _ in range(self.calls):
            out = self.function(self.tensors)
        out[-1].numpy()
        self.wall_seconds.append((time.perf_counter() - start[0]) / self.calls)
        self.cpu_seconds.append((time.process_time() - start[1]) / self.calls)


# -- measuring ----------------------------------------------------------------


def _directory_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def measure_model(
    spec,
    conditions,
    rounds,
    workdir,
    seed=0,
    log=print,
    steps_per_round=STEPS_PER_ROUND,
    discarded_rounds=DISCARDED_ROUNDS,
):
    """Measures one model under every condition, interleaved.

    Args:
        spec: A `ModelSpec`.
        conditions: The `Condition`s to measure (must include `plain`).
        rounds: Timed epochs per condition.
        workdir: Directory for the log dirs.
        seed: Seed for data, weights and the order of conditions.
        log: Progress printer.
        steps_per_round: Steps per epoch; keep it a multiple of every
            interval measured.
        discarded_rounds: Interleaved rounds run before the timed ones and
            thrown away.

    Returns:
        A dict with the model's results: per condition the epoch times,
        per-round ratios to plain, their median, warm-up time, memory, and
        for GradWatch conditions the recorded steps and event-file bytes.
    """
    rng = np.random.default_rng(seed)
    samples = steps_per_round * spec.batch_size
    x = rng.standard_normal((samples, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, 10, samples)
    turns = _Turns()
    workers = {}
    total_rounds = discarded_rounds + rounds
    for condition in conditions:
        log_dir = os.path.join(workdir, spec.key, condition.key)
        worker = _Worker(
            spec, condition, (x, y), total_rounds, turns, log_dir, seed
        )
        worker.start()
        workers[condition.key] = worker
    floor = None
    try:
        for key, worker in workers.items():
            turns.give(worker.name, worker)
            log(f"  {spec.key}: {key} warmed up in {worker.warmup_seconds:.1f} s")
            if floor is None and worker.model is not None:
                floor = Floor(worker.model, spec.batch_size)
        # Tracing leaves a great many objects behind; a full collection of
        # them would otherwise land in some condition's timed epoch.
        gc.collect()
        gc.freeze()
        order = list(workers)
        shuffler = random.Random(seed)
        for r in range(total_rounds):
            shuffler.shuffle(order)
            for key in order:
                turns.give(workers[key].name, workers[key])
            if floor is not None:
                floor.time()
            plain = workers["plain"].epoch_seconds[r]
            kind = "discarded" if r < discarded_rounds else "timed"
            log(f"  {spec.key}: round {r + 1}/{total_rounds} ({kind}) done, "
                f"plain {plain:.2f} s")
    finally:
        for worker in workers.values():
            worker.join(timeout=60)
        gc.unfreeze()

    timed = slice(discarded_rounds, None)
    plain = np.array(workers["plain"].epoch_seconds[timed])
    plain_cpu = np.array(workers["plain"].epoch_cpu_seconds[timed])
    result = {
        "label": spec.label,
        "steps_per_round": steps_per_round,
        "conditions": {},
        "floor_ms": 1000 * float(np.median(floor.wall_seconds[timed])) if floor else None,
        "floor_cpu_ms": 1000 * float(np.median(floor.cpu_seconds[timed])) if floor else None,
        "plain_cpu_ms_per_step": 1000 * float(np.median(plain_cpu)) / steps_per_round,
    }
    for condition in conditions:
        worker = workers[condition.key]
        seconds = np.array(worker.epoch_seconds[timed])
        cpu = np.array(worker.epoch_cpu_seconds[timed])
        entry = {
            "epoch_seconds": seconds.tolist(),
            "epoch_cpu_seconds": cpu.tolist(),
            "ratios": (seconds / plain).tolist(),
            "ratio_median": float(np.median(seconds / plain)),
            "cpu_ratio_median": float(np.median(cpu / plain_cpu)),
            "seconds_median": float(np.median(seconds)),
            "warmup_seconds": worker.warmup_seconds,
            "warmup_rss_kb": worker.warmup_rss_kb,
            "epoch_peak_rss_kb": (
                float(np.median(worker.epoch_peak_kb[timed]))
                if worker.epoch_peak_kb[timed]
                else None
            ),
        }
        if condition.update_freq is not None:
            recording = gradwatch.load(worker.log_dir)
            entry["watched_layers"] = len(recording.layers)
            entry["recorded_steps"] = len(recording.steps)
            entry["event_bytes"] = _directory_bytes(worker.log_dir)
            entry["bytes_per_1000_records"] = (
                entry["event_bytes"] / entry["recorded_steps"] * 1000
            )
            # Extra time per recorded step, from paired rounds.
            recorded_per_round = max(1, steps_per_round // condition.update_freq)
            extra = float(np.median(seconds - plain)) / recorded_per_round
            extra_cpu = float(np.median(cpu - plain_cpu)) / recorded_per_round
            entry["extra_ms_per_recorded_step"] = 1000 * extra
            entry["extra_cpu_ms_per_recorded_step"] = 1000 * extra_cpu
        result["conditions"][condition.key] = entry
    return result


# -- reporting ----------------------------------------------------------------


def machine():
    """One line: CPU model, cores, Python, Keras and its backend's version."""
    return f"{machine_info.description()}, {machine_info.software()}"


def _ratio(entry, field):
    return f"{entry[field]:.2f}×" if entry else "–"


def markdown_table(results, conditions, field="ratio_median"):
    """Cockpit's format: rows are models, columns tracking intervals.

    Args:
        results: `{model key: measure_model(...) result}`.
        conditions: All conditions (columns, in order; `plain` left out).
        field: `"ratio_median"` (wall time) or `"cpu_ratio_median"`.
    """
    columns = [c for c in conditions if c.key != "plain"]
    default = default_key()
    header = ["model"]
    for c in columns:
        label = c.label
        if c.key == default and c.key != "default":
            label += " (default)"
        header.append(label)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for result in results.values():
        cells = [result["label"]]
        for c in columns:
            cells.append(_ratio(result["conditions"].get(c.key), field))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details_table(results):
    """Per model: plain step time, GradWatch's cost per recorded step (wall
    and CPU) and per watched layer, event bytes, warm-up (tracing) time and
    memory."""
    lines = [
        "| model | watched layers | plain ms/step | +ms per recorded step "
        "(wall / CPU) | +µs CPU per recorded step per layer "
        "| event bytes per 1,000 records | bytes per record per layer "
        "| warm-up s: plain / every 1 | peak RSS MB: plain / every 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results.values():
        conds = result["conditions"]
        plain, every = conds["plain"], conds.get("every_1")
        if every is None:
            continue
        layers = every["watched_layers"]
        cpu_ms = every["extra_cpu_ms_per_recorded_step"]
        per_record = every["event_bytes"] / every["recorded_steps"]
        lines.append(
            "| {} | {} | {:.1f} | {:.1f} / {:.1f} | {:.0f} | {:,.0f} | {:.0f} | "
            "{:.1f} / {:.1f} | {} / {} |".format(
                result["label"],
                layers,
                1000 * plain["seconds_median"] / result["steps_per_round"],
                every["extra_ms_per_recorded_step"],
                cpu_ms,
                1000 * cpu_ms / layers,
                every["bytes_per_1000_records"],
                per_record / layers,
                plain["warmup_seconds"],
                every["warmup_seconds"],
                _mb(plain["epoch_peak_rss_kb"]),
                _mb(every["epoch_peak_rss_kb"]),
            )
        )
    return "\n".join(lines)


def _mb(kb):
    return "?" if kb is None else f"{kb / 1024:.0f}"


def targets(results):
    """Whether the targets are met, judged on the CPU-time ratio (the wall
    ratio beside it), as lines of text."""

    def line(what, entry, target):
        wall, cpu = entry["ratio_median"], entry["cpu_ratio_median"]
        verdict = "met" if cpu <= target else "MISSED"
        return (
            f"- {what}: CPU {cpu:.2f}× (wall {wall:.2f}×), target ≤ {target}×: "
            f"{verdict}"
        )

    lines = []
    for key, result in results.items():
        conditions = result["conditions"]
        for condition, target in (
            ("every_1", TARGETS_EVERY_STEP.get(key)),
            ("every_4", TARGET_EVERY_4),
            (default_key(), TARGET_DEFAULT),
        ):
            if target is not None and condition in conditions:
                what = condition.replace("_", " ") if condition != default_key() else "default cadence"
                lines.append(line(f"{what} on {result['label']}", conditions[condition], target))
    return "\n".join(lines)


def distributions_table(results):
    """Per model: what the distributions add to a step that measures them
    (every step with them against every step without), and what that comes
    to at their default interval, in CPU time."""
    lines = [
        "| model | every step + distributions | +CPU ms per distribution step "
        f"| at histogram_freq={gradwatch.DEFAULT_HISTOGRAM_FREQ}: + share of a plain step |",
        "|---|---|---|---|",
    ]
    for result in results.values():
        conditions = result["conditions"]
        every, both = conditions.get("every_1"), conditions.get("distributions_1")
        if every is None or both is None:
            continue
        plain = result["plain_cpu_ms_per_step"]
        per_step = (np.median(both["epoch_cpu_seconds"]) - np.median(every["epoch_cpu_seconds"]))
        extra = 1000 * float(per_step) / result["steps_per_round"]
        share = extra / (gradwatch.DEFAULT_HISTOGRAM_FREQ * plain)
        lines.append(
            f"| {result['label']} | {both['cpu_ratio_median']:.2f}× | {extra:.2f} | "
            f"{100 * share:.2f}% |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def floor_table(results):
    """Per model: the floor (one read of every watched tensor, forward and
    backward) against what GradWatch adds to a recorded step, in CPU time."""
    lines = [
        "| model | plain CPU ms/step | floor CPU ms per recorded step "
        "| every-step ratio at the floor | GradWatch +CPU ms per recorded step "
        "| GradWatch above the floor |",
        "|---|---|---|---|---|---|",
    ]
    for result in results.values():
        every = result["conditions"].get("every_1")
        floor = result.get("floor_cpu_ms")
        if every is None or floor is None:
            continue
        plain = result["plain_cpu_ms_per_step"]
        extra = every["extra_cpu_ms_per_recorded_step"]
        lines.append(
            f"| {result['label']} | {plain:.1f} | {floor:.2f} | "
            f"{(plain + floor) / plain:.2f}× | {extra:.2f} | {extra / floor:.1f}× |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def linearity(results):
    """Event bytes and extra CPU time per recorded step against the number of
    watched layers, at every step: a least-squares line `a + b x layers`
    through the models measured, and how far the worst of them is from it.

    The depth sweep (same width, more layers) is what tests linearity; the
    other models differ in their layers' sizes too.
    """
    points = [
        r["conditions"]["every_1"]
        for r in results.values()
        if "every_1" in r["conditions"]
    ]
    if len(points) < 2:
        return ""
    layers = np.array([p["watched_layers"] for p in points], float)
    lines = []
    for name, values, unit in (
        (
            "event bytes per record",
            [p["event_bytes"] / p["recorded_steps"] for p in points],
            "B",
        ),
        (
            "extra CPU per recorded step",
            [p["extra_cpu_ms_per_recorded_step"] for p in points],
            "ms",
        ),
    ):
        values = np.array(values, float)
        design = np.stack([np.ones_like(layers), layers], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, values, rcond=None)
        residual = np.abs(values - (a + b * layers)) / np.abs(values)
        lines.append(
            f"- {name} ≈ {a:.3g} {unit} + {b:.3g} {unit} × watched layers "
            f"(worst model {100 * residual.max():.0f}% off that line; "
            f"{len(points)} models, {int(layers.min())}-{int(layers.max())} "
            "layers)"
        )
    return "\n".join(lines)


def sweep_linearity(results):
    """`linearity` over the depth sweep alone (same layer width)."""
    sweep = {k: v for k, v in results.items() if k.startswith("relu_mlp_")}
    return linearity(sweep)


def report(results, conditions, rounds, seconds=None):
    """The full Markdown report.

    Args:
        results: `{model key: measure_model(...) result}`.
        conditions: All conditions, in column order.
        rounds: Timed rounds per condition.
        seconds: The benchmark's own wall time, if known.
    """
    steps = sorted({r["steps_per_round"] for r in results.values()})
    took = f" The benchmark took {seconds / 60:.1f} min." if seconds else ""
    return "\n\n".join(
        part
        for part in (
            f"Machine: {machine()}.{took}",
            f"Wall time relative to a plain `fit` of the same model, median "
            f"over {rounds} interleaved rounds of "
            f"{'/'.join(map(str, steps))} steps:",
            markdown_table(results, conditions),
            "The same, in process CPU time (insensitive to other processes "
            "taking the CPU away, which on a shared machine inflates wall "
            "times at random):",
            markdown_table(results, conditions, "cpu_ratio_median"),
            details_table(results),
            _titled(
                "The floor: one read of every watched tensor, forward and "
                "backward, timed in the same rounds (CPU):",
                floor_table(results),
            ),
            _titled(
                "Distributions (histograms and per-unit shares), CPU:",
                distributions_table(results),
            ),
            "Targets:\n" + targets(results),
            _titled(
                "Cost against watched layers, GradWatch every step, depth "
                "sweep (ReLU MLPs of width 64):",
                sweep_linearity(results),
            ),
            _titled("The same over every model measured:", linearity(results)),
        )
        if part.strip()
    )


def _titled(title, body):
    return f"{title}\n{body}" if body else ""


# -- command line -------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Measure GradWatch's overhead on fit (see the module "
        "docstring for the method)."
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS,
        help=f"timed rounds per condition (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), metavar="MODEL",
        help="models to measure (default all): " + ", ".join(MODELS),
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="one round on a tiny model: a smoke test, timings meaningless",
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv=None):
    """Runs the benchmark and prints the Markdown report.

    Returns:
        The process exit code.
    """
    args = parse_args(argv)
    if args.quick:
        specs, rounds = [QUICK_MODEL], 1
        options = {"steps_per_round": QUICK_STEPS_PER_ROUND, "discarded_rounds": 0}
    else:
        specs = [MODELS[k] for k in (args.models or MODELS)]
        rounds, options = args.rounds, {}
    conditions = all_conditions()
    by_key = {c.key: c for c in conditions}
    default = default_key()

    def log(text):
        print(text, file=sys.stderr, flush=True)

    results = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradwatch-overhead-") as workdir:
        for spec in specs:
            keys = spec.conditions or [c.key for c in conditions]
            chosen = [by_key[default if k == "default" else k] for k in keys]
            log(f"{spec.key}: {len(chosen)} conditions, {rounds} rounds")
            results[spec.key] = measure_model(
                spec, chosen, rounds, workdir, log=log, **options
            )
            log(markdown_table({spec.key: results[spec.key]}, conditions))
            # Keep what is measured so far, should a long run be cut short.
            _dump(args.out, results, rounds, options, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    log(f"done in {seconds:.0f} s")
    print(report(results, conditions, rounds, seconds))
    _dump(args.out, results, rounds, options, seconds)
    return 0


def _dump(path, results, rounds, options, seconds):
    if not path:
        return
    with open(path, "w") as out:
        json.dump(
            {
                "machine": machine(),
                "rounds": rounds,
                "discarded_rounds": options.get(
                    "discarded_rounds", DISCARDED_ROUNDS
                ),
                "seconds": seconds,
                "results": results,
            },
            out,
            indent=2,
        )


if __name__ == "__main__":
    sys.exit(main())
