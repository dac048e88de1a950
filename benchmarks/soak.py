"""Long runs: does the callback's memory stay bounded, and do the plugin's
responses stay under 200 ms, at 100,000 recorded steps x 200 layers and at
10,000 x 500?

Usage (from the repository root):

    python -m benchmarks.soak                       # both parts, defaults
    python -m benchmarks.soak --part memory --steps 6000
    python -m benchmarks.soak --part plugin --plugin-steps 100000 \\
        --logdir /tmp/soak                          # keeps the log for reuse
    python -m benchmarks.soak --quick               # a smoke run, ~30 s

Part A, callback memory. Trains a `--layers`-deep narrow MLP (Dense width 8,
tanh and ReLU alternating, batches of 4) with `GradWatch(update_freq=1)`, so
every step is a recorded step, for `--steps` steps. After a warm-up (tracing,
the findings window filling, allocator pools growing) a Keras callback samples,
at regular intervals: the process RSS (`VmRSS` in /proc/self/status:
TensorFlow allocates outside Python), the Python heap (`tracemalloc`, traced
from half-way through the warm-up: what was allocated since and is still
alive), the part of it allocated by gradwatch's own code (`package_heap`),
the number of objects the garbage collector tracks, the sizes of every
container reachable from the GradWatch callback (`container_sizes`) and the
event-file bytes. It prints the samples, the
least-squares growth slope of each (bytes per recorded step; over the whole
sampled span and over its second half, to tell an allocator settling from a
steady leak) and that slope projected over 100,000 recorded steps. At ~80 ms
per recorded step here, 100,000 steps take over 2 h: the default is what fits
in about ten minutes; `--steps 100000` runs the full length.

Part B, plugin latency. Writes a synthetic run of `--plugin-steps` recorded
steps x `--layers` layers with the plugin's own `SummaryWriter` (the format
the callback writes: 19 metric vectors and 6 headline scalars per step, a
findings document every 16 records, an init audit; values vary per step and
layer, with NaN where a metric does not apply and a few scattered NaN). It
reports the write time and file size, starts the stock `tensorboard` binary
on it (its default Rust data server, as the tests start it),
waits until the run is fully loaded (last step and final findings visible;
that time is itself a result), then times every route many times: `runs`,
`heatmap` for every metric with the default `max_columns`, in the binary
format the page asks for (first request, which reads the series from the
data server, reported apart from the repeats, which hit the plugin's cache),
one as JSON, two zoomed-in heatmaps as the page asks for them (a step range
at one column per pixel), `profile` at a few steps and `findings`. It prints
the median and p95 latency and the response size of each, flags any route
whose median exceeds 200 ms or whose first request exceeds 500 ms, and
reports TensorBoard's RSS
(its Python process and the data server) and how many steps per series it
actually serves (TensorBoard reservoir-samples a series to
`metadata.SAMPLES_PER_SERIES`, raised by the plugin's loader), and how many
of the run's single-step non-finite bursts survive that. Last, it starts a
fresh TensorBoard and times a `profile` request before any heatmap has been
read: what a user meets when the first click on the page is on a step (not
with `--quick`).

Latencies are wall-clock on a shared machine; the client (this process) is
idle while it waits, so they are TensorBoard's.
"""

import argparse
import collections
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine as machine_info  # noqa: E402
from benchmarks.machine import status_kb  # noqa: E402
from benchmarks.tensorboard_process import TensorBoardProcess  # noqa: E402
from gradwatch_tensorboard import metadata  # noqa: E402  (no TensorFlow)
from gradwatch_tensorboard.summary import SummaryWriter  # noqa: E402

DEFAULT_LAYERS = 200
# Part A: about ten minutes at ~80 ms per recorded step with 200 layers.
DEFAULT_STEPS = 6000
DEFAULT_PLUGIN_STEPS = 100_000
PROJECT_STEPS = 100_000
# The plugin's targets (issue 11): a route's median, and its first request.
TARGET_SECONDS = 0.2
TARGET_FIRST_SECONDS = 0.5
DEFAULT_REPEATS = 20
# Part A: samples taken after the warm-up.
DEFAULT_SAMPLES = 24
WIDTH = 8
BATCH_SIZE = 4
STEPS_PER_EPOCH = 500
# Part B: the callback rewrites its findings document every this many
# records (`callback._LiveFindings.DOCUMENT_EVERY`).
FINDINGS_EVERY = 16
HEADLINES = (
    "dead_fraction_max",
    "saturation_fraction_max",
    "gradient_var_ratio_first_to_last",
    "gradient_var_layer_ratio_min",
    "gradient_var_layer_ratio_max",
    "nonfinite_count",
)
# The columns the page asks for in a 1400-pixel wide window
# (static/index.js, `columnsFor`: one per device pixel of the panel).
PAGE_COLUMNS = 1350

QUICK = dict(
    steps=240, layers=6, plugin_steps=600, plugin_layers=12, warmup=60,
    samples=4, repeats=1,
)


def log(text):
    print(text, file=sys.stderr, flush=True)


# -- memory probes ------------------------------------------------------------


def process_tree(pid):
    """`pid` and all its descendants (Linux /proc), parents first."""
    pids, queue = [], [int(pid)]
    while queue:
        current = queue.pop(0)
        pids.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    queue.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return pids


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return os.path.basename(argv[0].decode()) if argv and argv[0] else "?"
    except OSError:
        return "?"


_CONTAINERS = (list, tuple, dict, set, frozenset, collections.deque)
_FOLLOWED_MODULES = ("gradwatch", "tensorboard.summary.writer", "queue")


def container_sizes(root, name="callback", max_depth=10):
    """The size of every container reachable from `root` through objects of
    the gradwatch packages (and TensorBoard's event-file writer).

    Keras and TensorFlow objects (the model, its layers, variables, traced
    functions) are not followed: they belong to the model, not to the
    callback. Elements of a container are summed under one path (`[*]`), so
    a bounded window of rows has a constant total however its contents move.

    Args:
        root: The object to start from (a `GradWatch` callback).
        name: The root's name in the paths.
        max_depth: How many attribute or element hops to follow.

    Returns:
        `{path: size}`: `len` of lists, tuples, dicts, sets and deques,
        `nbytes` of numpy arrays, for every path (like
        `callback._live_findings.window._rows`).
    """
    sizes = collections.Counter()
    seen = set()

    def visit(obj, path, depth):
        if id(obj) in seen or depth > max_depth:
            return
        if isinstance(obj, (str, bytes, int, float, bool, type(None))):
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            sizes[path] += obj.nbytes
            return
        if isinstance(obj, _CONTAINERS):
            sizes[path] += len(obj)
            items = obj.values() if isinstance(obj, dict) else obj
            for item in list(items):
                visit(item, path + "[*]", depth + 1)
            if isinstance(obj, dict):
                for key in list(obj):
                    visit(key, path + "{key}", depth + 1)
            return
        module = type(obj).__module__ or ""
        if not (obj is root or module.startswith(_FOLLOWED_MODULES)):
            return
        attributes = getattr(obj, "__dict__", None)
        if attributes is None:
            return
        for attribute, value in list(attributes.items()):
            visit(value, f"{path}.{attribute}", depth + 1)

    visit(root, name, 0)
    return dict(sizes)


def growing_containers(censuses):
    """Paths whose size grew between every pair of consecutive censuses.

    Args:
        censuses: `container_sizes` results, in the order they were taken.

    Returns:
        `{path: [size at each census]}` for the paths that grew every time:
        something appended per step, never trimmed.
    """
    if len(censuses) < 2:
        return {}
    paths = set().union(*censuses)
    growing = {}
    for path in sorted(paths):
        sizes = [c.get(path, 0) for c in censuses]
        if all(b > a for a, b in zip(sizes, sizes[1:])):
            growing[path] = sizes
    return growing


# Frames `tracemalloc` keeps per allocation: enough to see gradwatch's
# frame under the libraries it calls. It costs: with 200 layers every-step
# recording ran ~4x slower with 16 frames than without tracing, so the soak's default is 1 (only
# allocations made on gradwatch's own lines count as gradwatch's).
TRACE_FRAMES = 8
DEFAULT_TRACE_FRAMES = 1


def package_roots(packages=("gradwatch", "gradwatch_tensorboard")):
    """The source directories of these packages."""
    roots = []
    for package in packages:
        module = __import__(package)
        roots.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(roots)


def package_heap(snapshot, roots=None, foreign=(os.sep + "keras" + os.sep,)):
    """Bytes, still allocated, that code of the gradwatch packages allocated,
    directly or through the libraries it called (start `tracemalloc` with
    `TRACE_FRAMES` frames).

    A trace counts if a frame of its traceback lies in `roots`, unless the
    code that the innermost such frame called lies in `foreign`: GradWatch
    runs Keras' own train step inside a one-line wrapper (the instrumented
    step), and what Keras allocates there is Keras' (and is counted by the
    process-wide figures).

    Args:
        snapshot: A `tracemalloc.Snapshot`.
        roots: Source directories (default: `package_roots()`).
        foreign: Path fragments of code whose allocations don't count even
            when gradwatch called it.
    """
    roots = roots or package_roots()
    total = 0
    for stat in snapshot.statistics("traceback"):
        frames = stat.traceback  # oldest first
        inner = None
        for index, frame in enumerate(frames):
            if frame.filename.startswith(roots):
                inner = index
        if inner is None:
            continue
        if inner + 1 < len(frames) and any(
            part in frames[inner + 1].filename for part in foreign
        ):
            continue
        total += stat.size
    return total


def slope(xs, ys):
    """Least-squares slope of `ys` against `xs` (NaN with under 2 points)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 2 or np.ptp(xs) == 0:
        return math.nan
    return float(np.polyfit(xs, ys, 1)[0])


# -- part A: callback memory --------------------------------------------------


def narrow_mlp(layers, width=WIDTH):
    """`layers` Dense layers of `width` units (tanh and ReLU alternating, then
    a linear head): every one is watched."""
    import keras

    stack = [keras.Input((width,))]
    for i in range(layers - 1):
        stack.append(
            keras.layers.Dense(width, activation="tanh" if i % 2 == 0 else "relu")
        )
    stack.append(keras.layers.Dense(1))
    return keras.Sequential(stack)


def _memory_sampler_class():
    import keras

    class MemorySampler(keras.callbacks.Callback):
        """Samples memory after every `every`-th step once `warmup` steps have
        run, and drives a `keras.utils.Progbar` (listed after GradWatch, so a
        sample follows that step's write).

        Args:
            total: Steps the run will take.
            warmup: Steps before the first sample.
            every: Steps between samples.
            watch: The GradWatch callback (its containers are counted).
            log_dir: Its log directory (event bytes).
            heap: Whether to trace the Python heap (`tracemalloc`).
            progress: Whether to show a progress bar.
        """

        def __init__(self, total, warmup, every, watch, log_dir, heap=True,
                     progress=True, frames=DEFAULT_TRACE_FRAMES, trace_from=None):
            super().__init__()
            self.total, self.warmup, self.every = total, warmup, every
            self.watch, self.log_dir, self.heap = watch, log_dir, heap
            self.step = 0
            # Python allocations are traced from half-way through the
            # warm-up: the heap figures are what was allocated since then
            # and is still alive. By the first sample, bounded state that
            # is renewed as steps pass (the findings window's rows) has been
            # renewed once, so the figures grow from then on only if
            # something accumulates.
            self.trace_from = trace_from or max(1, warmup // 2)
            self.frames = frames
            self.roots = package_roots()
            self.samples = []
            self.censuses = []
            self.started = None
            self.progbar = (
                keras.utils.Progbar(
                    total, interval=10.0, unit_name="recorded step",
                    stateful_metrics=["rss_MB", "heap_MB"],
                )
                if progress
                else None
            )

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.heap and self.step == self.trace_from:
                tracemalloc.start(self.frames)
            due = self.step >= self.warmup and (
                (self.step - self.warmup) % self.every == 0
            )
            if due:
                self.sample()
            if self.progbar is not None and (due or self.step % 10 == 0
                                             or self.step == self.total):
                values = [("rss_MB", status_kb("VmRSS") / 1024)]
                if self.heap:
                    values.append(
                        ("heap_MB", tracemalloc.get_traced_memory()[0] / 2**20)
                    )
                self.progbar.update(self.step, values)

        def sample(self):
            started = time.perf_counter()
            if self.heap and not tracemalloc.is_tracing():
                tracemalloc.start(self.frames)
            gc.collect()
            census = container_sizes(self.watch)
            entry = {
                "step": self.step,
                "seconds": started - self.started,
                "rss_kb": status_kb("VmRSS"),
                "hwm_kb": status_kb("VmHWM"),
                "gc_objects": len(gc.get_objects()),
                "event_bytes": directory_bytes(self.log_dir),
                # Items of every container plus bytes of every array
                # reachable from the callback (`container_sizes`).
                "callback_containers": sum(census.values()),
            }
            if self.heap:
                entry["heap_bytes"] = tracemalloc.get_traced_memory()[0]
                entry["gradwatch_heap_bytes"] = package_heap(
                    tracemalloc.take_snapshot(), self.roots
                )
            entry["sample_seconds"] = time.perf_counter() - started
            self.samples.append(entry)
            self.censuses.append(census)

    return MemorySampler


def directory_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def measure_memory(steps, layers, log_dir, warmup=None, samples=DEFAULT_SAMPLES,
                   heap=True, jit_compile=False, progress=True, seed=0,
                   sampler_every=None, heap_frames=DEFAULT_TRACE_FRAMES,
                   max_seconds=None, trace_from=None):
    """Part A: trains with `GradWatch(update_freq=1)` and samples memory.

    Args:
        steps: Recorded steps (= training steps).
        layers: Watched Dense layers.
        log_dir: Where GradWatch writes.
        warmup: Steps before the first sample (default: a fifth, at most 500).
        samples: Samples after the warm-up (about; the last step is always one).
        heap: Trace the Python heap with `tracemalloc` (slows Python down).
        heap_frames: Frames per traced allocation (see `TRACE_FRAMES`).
        max_seconds: Stop training after this long, if given (the figures
            then cover the steps run).
        trace_from: The step from which `tracemalloc` traces (default half
            the warm-up).
        jit_compile: Passed to `compile`.
        progress: Show a `Progbar`.
        seed: Random seed.
        sampler_every: Steps between samples (overrides `samples`).

    Returns:
        A dict: the samples, the fitted slopes and projections, the growing
        containers, the event bytes per step, timings.
    """
    import keras

    import gradwatch

    if warmup is None:
        warmup = min(500, max(1, steps // 5))
    warmup = min(warmup, steps)
    every = sampler_every or max(1, (steps - warmup) // max(1, samples))
    keras.utils.set_random_seed(seed)
    model = narrow_mlp(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-2),
        loss="mse",
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(seed)
    per_epoch = min(STEPS_PER_EPOCH, steps)
    x = rng.normal(size=(per_epoch * BATCH_SIZE, WIDTH)).astype("float32")
    y = np.tanh(x.sum(axis=1, keepdims=True)).astype("float32")
    epochs = math.ceil(steps / per_epoch)
    watch = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    sampler = _memory_sampler_class()(
        steps, warmup, every, watch, log_dir, heap=heap, progress=progress,
        frames=heap_frames, trace_from=trace_from,
    )

    class StopAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            late = max_seconds is not None and (
                time.perf_counter() - started > max_seconds
            )
            if sampler.step >= steps or late:
                self.model.stop_training = True

    started = time.perf_counter()
    rss_start = status_kb("VmRSS")
    try:
        model.fit(
            x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=False,
            verbose=0, callbacks=[watch, sampler, StopAt()],
        )
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    seconds = time.perf_counter() - started
    # RSS once fit has ended (its writers closed, its window released):
    # reported apart, never fitted with the samples taken while training.
    sampler.heap = False  # tracemalloc has stopped: no heap figures
    sampler.sample()
    after_fit = sampler.samples.pop()
    sampler.censuses.pop()
    recording = gradwatch.load(log_dir)
    result = {
        "steps": sampler.step,
        "recorded_steps": int(len(recording.steps)),
        "watched_layers": len(recording.layers),
        "warmup_steps": warmup,
        "heap_frames": heap_frames if heap else None,
        "sample_every": every,
        "seconds": seconds,
        "rss_start_kb": rss_start,
        "samples": sampler.samples,
        "after_fit": after_fit,
        "growing_containers": growing_containers(sampler.censuses),
        "event_bytes": directory_bytes(log_dir),
    }
    result["event_bytes_per_step"] = result["event_bytes"] / max(
        1, result["recorded_steps"]
    )
    result["event_bytes_per_step_per_layer"] = result["event_bytes_per_step"] / max(
        1, result["watched_layers"]
    )
    result["slopes"] = growth_slopes(sampler.samples)
    return result


_SERIES = (
    ("rss", "rss_kb", 1024),
    ("python heap", "heap_bytes", 1),
    ("gradwatch heap", "gradwatch_heap_bytes", 1),
    ("gc objects", "gc_objects", 1),
    ("callback container sizes", "callback_containers", 1),
    ("event file", "event_bytes", 1),
)


def growth_slopes(samples):
    """Per series: slope per recorded step over all samples and over the
    later half, and what the overall slope projects for 100,000 steps."""
    out = {}
    usable = [s for s in samples if s.get("heap_bytes") is not None] or samples
    for label, field, scale in _SERIES:
        rows = [s for s in (usable if "heap" in field else samples) if field in s]
        if len(rows) < 2:
            continue
        xs = [s["step"] for s in rows]
        ys = [s[field] * scale for s in rows]
        half = rows[len(rows) // 2:]
        out[label] = {
            "per_step": slope(xs, ys),
            "per_step_later_half": slope(
                [s["step"] for s in half], [s[field] * scale for s in half]
            ),
            "first": ys[0],
            "last": ys[-1],
        }
        out[label]["projected_100k"] = out[label]["per_step"] * PROJECT_STEPS
    return out


def memory_report(result):
    """Part A as Markdown."""
    lines = [
        f"## A. Callback memory: {result['watched_layers']} watched layers, "
        f"GradWatch(update_freq=1), {result['recorded_steps']:,} recorded "
        f"steps in {result['seconds'] / 60:.1f} min "
        f"({1000 * result['seconds'] / max(1, result['steps']):.0f} ms per "
        f"step incl. sampling); warm-up {result['warmup_steps']} steps, then "
        f"a sample every {result['sample_every']} steps",
        "",
        "| step | RSS MB | peak RSS MB | Python heap MB | gradwatch heap KB "
        "| gc objects | callback container sizes | event MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["samples"]:
        heap = s.get("heap_bytes")
        gw = s.get("gradwatch_heap_bytes")
        lines.append(
            f"| {s['step']} | {s['rss_kb'] / 1024:.1f} | {s['hwm_kb'] / 1024:.1f} "
            f"| {'–' if heap is None else f'{heap / 2**20:.2f}'} "
            f"| {'–' if gw is None else f'{gw / 1024:.1f}'} "
            f"| {s['gc_objects']:,} | {s['callback_containers']:,} "
            f"| {s['event_bytes'] / 2**20:.1f} |"
        )
    lines += [
        "",
        "| series | first | last | slope per recorded step | slope, later half "
        "| projected over 100,000 steps |",
        "|---|---|---|---|---|---|",
    ]
    for label, g in result["slopes"].items():
        unit = "" if label in ("gc objects", "callback container sizes") else " B"
        lines.append(
            f"| {label} | {_size(g['first'], unit)} | {_size(g['last'], unit)} "
            f"| {g['per_step']:+,.1f}{unit} | {g['per_step_later_half']:+,.1f}{unit} "
            f"| {_size(g['projected_100k'], unit, signed=True)} |"
        )
    growing = result["growing_containers"]
    lines += [
        "",
        f"Event file: {result['event_bytes'] / 2**20:.1f} MB, "
        f"{result['event_bytes_per_step']:,.0f} B per recorded step "
        f"({result['event_bytes_per_step_per_layer']:.0f} B per step per layer); "
        f"{_size(result['event_bytes_per_step'] * PROJECT_STEPS, ' B')} "
        "per 100,000 steps.",
        "Containers held by the callback that grew at every sample: "
        + (
            ", ".join(f"`{p}` {v[0]}→{v[-1]}" for p, v in growing.items())
            if growing
            else "none."
        ),
    ]
    after = result.get("after_fit")
    if after:
        lines.append(
            f"After fit returned: RSS {after['rss_kb'] / 1024:.1f} MB, "
            f"{after['gc_objects']:,} gc objects (not in the slopes)."
        )
    return "\n".join(lines)


def _size(value, unit, signed=False):
    if unit != " B":
        return f"{value:+,.0f}" if signed else f"{value:,.0f}"
    sign = "+" if signed and value >= 0 else ""
    for factor, name in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if abs(value) >= factor:
            return f"{sign}{value / factor:.2f} {name}"
    return f"{sign}{value:.0f} B"


# -- part B: plugin latency ---------------------------------------------------


def layer_names(layers):
    names = [f"dense_{i}" for i in range(layers - 1)]
    return names + ["head"]


def synthetic_rows(start, count, layers, rng):
    """Metric values for steps `start..start+count-1`: a float32 array
    `[count, metrics, layers]` in `metadata.METRIC_NAMES` order.

    Layers alternate tanh (saturation applies) and ReLU (dead units apply);
    every 10th layer is a BatchNormalization (the BN metrics apply to it
    alone); values drift with the step and differ per layer; about 0.1% of
    the remaining cells are NaN, and one step in 5,000 has non-finite counts.
    """
    names = metadata.METRIC_NAMES
    steps = np.arange(start, start + count, dtype=np.float64)[:, None]
    depth = np.arange(layers, dtype=np.float64)[None, :] / max(1, layers - 1)
    phase = np.arange(layers)[None, :] * 0.37
    drift = np.sin(steps / 3000.0 + phase)  # [count, layers]
    noise = lambda: rng.normal(size=(count, layers))  # noqa: E731
    out = np.full((count, len(names), layers), np.nan, dtype=np.float32)
    col = {name: i for i, name in enumerate(names)}
    tanh = (np.arange(layers) % 2 == 0)[None, :]
    bn = (np.arange(layers) % 10 == 9)[None, :]
    log_var = -3.0 * depth + 0.5 * drift + 0.1 * noise()
    out[:, col["activation_mean"]] = 0.1 * drift + 0.01 * noise()
    out[:, col["activation_var"]] = 10.0 ** log_var
    out[:, col["activation_gain"]] = 10.0 ** (0.2 * drift + 0.05 * noise())
    out[:, col["gradient_var"]] = 10.0 ** (-6.0 + 4.0 * depth + 0.3 * drift
                                           + 0.1 * noise())
    out[:, col["gradient_norm"]] = 10.0 ** (-2.0 + depth + 0.1 * noise())
    out[:, col["update_ratio"]] = 10.0 ** (-3.0 + 0.3 * drift + 0.1 * noise())
    saturation = 1.0 / (1.0 + np.exp(-(4.0 * drift - 2.0 + noise())))
    out[:, col["saturation_fraction"]] = np.where(tanh, saturation, np.nan)
    dead = np.clip(np.round(4.0 * (drift + 0.5 * noise())), 0, 8)
    out[:, col["dead_units"]] = np.where(~tanh, dead, np.nan)
    out[:, col["dead_fraction"]] = np.where(~tanh, dead / 8.0, np.nan)
    out[:, col["dead_units_window"]] = np.where(~tanh, np.maximum(dead - 1, 0), np.nan)
    for name, value in (
        ("bn_batch_mean", 0.1 * drift),
        ("bn_batch_var", 1.0 + 0.1 * drift),
        ("bn_moving_mean", 0.09 * drift),
        ("bn_moving_var", 1.0 + 0.09 * drift),
        ("bn_gamma", 1.0 + 0.01 * drift),
        ("bn_beta", 0.01 * drift),
        ("bn_skew", 10.0 ** (-1.0 + 0.5 * drift)),
    ):
        out[:, col[name]] = np.where(bn, value, np.nan)
    out[:, col["activation_nonfinite"]] = 0.0
    out[:, col["gradient_nonfinite"]] = 0.0
    bursts = np.flatnonzero((steps[:, 0] % 5000) == 4999)
    out[bursts, col["activation_nonfinite"], -3:] = 8.0
    out[bursts, col["gradient_nonfinite"], :3] = 32.0
    holes = rng.random(out.shape) < 0.001
    out[holes] = np.nan
    return out


def synthetic_findings(step, layers, final=False):
    """A findings document as the callback writes one (three findings)."""
    from gradwatch import findings

    def finding(rule, severity, metric, chosen, summary):
        return {
            "rule": rule, "severity": severity, "metric": metric,
            "layers": chosen, "first_step": max(0, step - 5000),
            "last_step": step, "ongoing": True, "summary": summary,
            "group": "", "message": f"{summary} in {len(chosen)} layers",
            "remedy": "see the README's remedies for " + rule,
        }

    return {
        "version": metadata.FINDINGS_VERSION,
        "step": int(step),
        "final": bool(final),
        "thresholds": findings.Thresholds().to_json(),
        "findings": [
            finding("vanishing_gradients", "warning", "gradient_var",
                    layers[: len(layers) // 4], "gradient variance falls 1e4x"),
            finding("saturation", "warning", "saturation_fraction",
                    layers[::8], "over 50% of units saturated"),
            finding("dying_units", "info", "dead_fraction", layers[1::16],
                    "units dead for a whole epoch"),
        ],
    }


def write_synthetic_run(run_dir, steps, layers, seed=0, progress=True):
    """Writes `steps` recorded steps x `layers` layers with `SummaryWriter`.

    Returns:
        `{"seconds", "bytes", "steps", "layers"}`.
    """
    names = layer_names(layers)
    rng = np.random.default_rng(seed)
    writer = SummaryWriter(run_dir, names)
    audit = [
        {"layer": name, "activation": "tanh" if i % 2 == 0 else "relu",
         "fan_in": WIDTH, "fan_out": WIDTH, "kernel_std": 0.35,
         "scheme": "glorot_uniform"}
        for i, name in enumerate(names)
    ]
    writer.write_document(0, metadata.INIT_AUDIT_TAG, audit)
    shown = time.perf_counter()
    metric_names = metadata.METRIC_NAMES
    chunk = 1000
    started = time.perf_counter()
    for start in range(0, steps, chunk):
        count = min(chunk, steps - start)
        rows = synthetic_rows(start, count, layers, rng)
        for i in range(count):
            step = start + i
            row = rows[i]
            scalars = {h: float(rng.random()) for h in HEADLINES}
            writer.write_step(step, dict(zip(metric_names, row)), scalars)
            if step == 4999:
                writer.write_document(
                    step, metadata.FIRST_NONFINITE_TAG,
                    {"step": step, "layer": names[0], "kind": "gradient"},
                )
            if step % FINDINGS_EVERY == 0 or step == steps - 1:
                writer.write_document(
                    step, metadata.FINDINGS_TAG,
                    synthetic_findings(step, names, final=step == steps - 1),
                    kind="findings",
                )
        now = time.perf_counter()
        if progress and (now - shown > 10 or start + count == steps):
            shown = now
            done = start + count
            log(f"  written {done:,}/{steps:,} steps, "
                f"{directory_bytes(run_dir) / 2**20:,.0f} MB, "
                f"{now - started:.0f} s")
    writer.close()
    return {
        "seconds": time.perf_counter() - started,
        "bytes": directory_bytes(run_dir),
        "steps": steps,
        "layers": layers,
    }


class TensorBoard(TensorBoardProcess):
    """The stock `tensorboard --logdir` as the tests start it, with timed
    requests and the memory of its processes."""

    def __init__(self, log_dir, extra_args=(), start_timeout=120):
        super().__init__(log_dir, extra_args, start_timeout)

    def timed_get(self, path, timeout=300):
        """`(status, body bytes, seconds)` of a GET on this TensorBoard."""
        started = time.perf_counter()
        status, body = self.get(path, timeout)
        return status, body, time.perf_counter() - started

    def get_json(self, path, timeout=300):
        status, body, seconds = self.timed_get(path, timeout)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:500]!r}")
        return json.loads(body), len(body), seconds

    def rss_kb(self):
        """`{pid: (command, VmRSS kB, VmHWM kB)}` of TensorBoard and its
        children (the Rust data server)."""
        return {
            pid: (_command_name(pid), status_kb("VmRSS", pid), status_kb("VmHWM", pid))
            for pid in process_tree(self.process.pid)
        }


def _quote(value):
    return urllib.parse.quote(str(value), safe="")


def wait_until_loaded(tb, run, last_step, timeout, progress=True):
    """Polls `runs` (and `findings`) until `run` reports `last_step` and its
    final findings document. Returns seconds since TensorBoard was started."""
    deadline = time.time() + timeout
    shown = None
    while time.time() < deadline:
        try:
            body, _, _ = tb.get_json("data/plugin/gradwatch/runs", timeout=120)
        except (RuntimeError, OSError, ValueError):
            body = {"runs": []}
        runs = {r["run"]: r for r in body["runs"]}
        seen = runs.get(run, {}).get("last_step")
        if seen == last_step:
            findings, _, _ = tb.get_json(
                f"data/plugin/gradwatch/findings?run={_quote(run)}", timeout=120
            )
            if findings.get("final"):
                return time.perf_counter() - tb.started
        if progress and seen != shown and (shown is None or seen is None
                                            or seen - shown >= last_step // 20):
            log(f"  loading: last step seen {seen} of {last_step} "
                f"({time.perf_counter() - tb.started:.0f} s)")
            shown = seen
        time.sleep(1.0)
    raise TimeoutError(f"run {run!r} not fully loaded within {timeout} s")


def _percentile(values, q):
    return float(np.percentile(np.asarray(values, float), q)) if values else math.nan


def time_route(tb, path, repeats):
    """`{"first", "median", "p95", "max", "bytes", "status"}` over `1 + repeats`
    GETs of `path`; `first` is the first one, the rest make the statistics."""
    status, body, first = tb.timed_get(path)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:500]!r}")
    times = []
    for _ in range(repeats):
        _, body, seconds = tb.timed_get(path)
        times.append(seconds)
    return {
        "path": path,
        "first": first,
        "median": statistics.median(times) if times else first,
        "p95": _percentile(times, 95) if times else first,
        "max": max(times) if times else first,
        "bytes": len(body),
        "repeats": repeats,
    }


def measure_plugin(plugin_dir, steps, layers, repeats=DEFAULT_REPEATS,
                   reuse=False, load_timeout=3600, progress=True, seed=0,
                   fresh_profile=True):
    """Part B: writes (or reuses) the synthetic run, serves it with the stock
    `tensorboard`, times the routes.

    Args:
        plugin_dir: TensorBoard's `--logdir`; the run goes in `run_<steps>x<layers>`.
        steps, layers: The run's size.
        repeats: Timed requests per route after the first.
        reuse: Reuse a run of this size already in `plugin_dir` if complete.
        load_timeout: Seconds to wait for TensorBoard to load it.
        progress: Progress lines on stderr.
        seed: Random seed of the values.
        fresh_profile: Also restart TensorBoard and time a `profile` request
            before any heatmap (what a user's first click on a step costs).

    Returns:
        A dict of every figure (see `plugin_report`).
    """
    run = f"run_{steps}x{layers}"
    run_dir = os.path.join(plugin_dir, run)
    marker = os.path.join(plugin_dir, run + ".json")
    result = {"run": run, "steps": steps, "layers": layers}
    if reuse and os.path.exists(marker) and os.path.isdir(run_dir):
        with open(marker) as f:
            result["write"] = json.load(f)
        result["write"]["reused"] = True
        log(f"B: reusing {run_dir}")
    else:
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)
        log(f"B: writing {steps:,} steps x {layers} layers to {run_dir}")
        result["write"] = write_synthetic_run(run_dir, steps, layers, seed,
                                              progress=progress)
        with open(marker, "w") as f:
            json.dump(result["write"], f)
    log(f"B: {result['write']['bytes'] / 2**20:,.0f} MB written in "
        f"{result['write']['seconds']:.0f} s; starting tensorboard")
    with TensorBoard(plugin_dir) as tb:
        result["url_seconds"] = time.perf_counter() - tb.started
        result["load_seconds"] = wait_until_loaded(
            tb, run, steps - 1, load_timeout, progress
        )
        log(f"B: loaded in {result['load_seconds']:.0f} s; timing routes "
            f"({repeats} repeats each)")
        result["rss_loaded"] = tb.rss_kb()
        routes = []
        runs_path = "data/plugin/gradwatch/runs"
        routes.append(("runs", time_route(tb, runs_path, repeats)))
        listing, _, _ = tb.get_json(runs_path)
        info = next(r for r in listing["runs"] if r["run"] == run)
        served = {}
        served_steps = None
        heatmap = f"data/plugin/gradwatch/heatmap?run={_quote(run)}"
        for metric in info["metrics"]:
            # As the page asks: the binary payload, 1,000 columns.
            path = f"{heatmap}&metric={metric}&format=binary"
            timing = time_route(tb, path, repeats)
            body, _, _ = tb.get_json(f"{heatmap}&metric={metric}")
            served[metric] = body["total_steps"]
            timing["columns"] = len(body["steps"])
            routes.append((f"heatmap {metric} (binary)", timing))
            if metric == "activation_var":
                served_steps = body
            if progress:
                log(f"  heatmap {metric}: first {timing['first']:.2f} s, "
                    f"median {timing['median']:.3f} s")
        # The same as JSON (the default format, for scripts).
        path = f"{heatmap}&metric=activation_var"
        routes.append(("heatmap activation_var (JSON)", time_route(tb, path, repeats)))
        # Zoomed as the page asks: the visible step range, at one column per
        # pixel; 100 steps in the middle, and 1% of the run.
        middle = steps // 2
        for label, span in (("100 steps", 100), ("1% of the run", max(100, steps // 100))):
            path = (f"{heatmap}&metric=activation_var&format=binary"
                    f"&max_columns={PAGE_COLUMNS}&start_step={middle}"
                    f"&end_step={middle + span - 1}")
            routes.append((f"heatmap activation_var zoomed to {label} (binary)",
                           time_route(tb, path, repeats)))
        # Profile at the first, a middle and the last served step.
        full, _, _ = tb.get_json(
            f"data/plugin/gradwatch/heatmap?run={_quote(run)}&metric=activation_var"
            f"&max_columns=20000"
        )
        all_served = full["steps"]
        for label, step in (("first", all_served[0]),
                            ("middle", all_served[len(all_served) // 2]),
                            ("last", all_served[-1])):
            path = f"data/plugin/gradwatch/profile?run={_quote(run)}&step={step}"
            routes.append((f"profile ({label} step {step})",
                           time_route(tb, path, repeats)))
        path = f"data/plugin/gradwatch/findings?run={_quote(run)}"
        routes.append(("findings", time_route(tb, path, repeats)))
        result["bursts"] = _served_bursts(tb, run, steps)
        result["rss_after"] = tb.rss_kb()
        result["served_steps"] = served
        result["served_first_last"] = [all_served[0], all_served[-1]]
        result["served_gaps"] = _gap_summary(all_served)
        result["default_columns"] = len(served_steps["steps"]) if served_steps else None
    # What a user meets first: a fresh server, and a click on a step (the
    # depth profile) before any heatmap has been read: first as the page
    # asks (the two metrics it draws), then every metric (the API default,
    # which reads the 17 other series).
    if not fresh_profile:
        result["routes"] = [dict(t, route=name) for name, t in routes]
        return result
    log("B: restarting tensorboard for the first-request-on-a-fresh-server case")
    with TensorBoard(plugin_dir) as tb:
        wait_until_loaded(tb, run, steps - 1, load_timeout, progress=False)
        step = all_served[len(all_served) // 2]
        path = f"data/plugin/gradwatch/profile?run={_quote(run)}&step={step}"
        routes.append((f"profile (step {step}) on a fresh server, as the page asks",
                       time_route(tb, path + "&metrics=activation_var,gradient_var", repeats)))
        routes.append((f"profile (step {step}) on a fresh server, every metric",
                       time_route(tb, path, repeats)))
        result["rss_fresh_after_profile"] = tb.rss_kb()
    result["routes"] = [dict(t, route=name) for name, t in routes]
    return result


def _served_bursts(tb, run, steps):
    """How many of the synthetic run's non-finite bursts (one step in 5,000,
    see `synthetic_rows`) TensorBoard serves, and how many columns of the
    default heatmap show one."""
    written = [s for s in range(steps) if s % 5000 == 4999]
    base = (f"data/plugin/gradwatch/heatmap?run={_quote(run)}"
            f"&metric=activation_nonfinite")
    full, _, _ = tb.get_json(base + "&max_columns=20000")
    default, _, _ = tb.get_json(base)

    def flagged(body):
        return [
            step for step, row in zip(body["steps"], body["values"])
            if any(isinstance(v, (int, float)) and v > 0 for v in row)
        ]

    return {
        "written": len(written),
        "served": len(flagged(full)),
        "default_columns": len(flagged(default)),
    }


def _gap_summary(steps):
    gaps = np.diff(np.asarray(steps, np.int64))
    if not len(gaps):
        return {}
    return {"median": float(np.median(gaps)), "max": int(gaps.max()),
            "min": int(gaps.min())}


def plugin_report(result):
    """Part B as Markdown."""
    write = result["write"]
    lines = [
        f"## B. Plugin latency: {result['steps']:,} recorded steps x "
        f"{result['layers']} layers, stock `tensorboard` (Rust data server)",
        "",
        f"- Written with `SummaryWriter` in {write['seconds']:.0f} s "
        f"({1e6 * write['seconds'] / write['steps']:.0f} µs per step)"
        + (" (an earlier run's file, reused)" if write.get("reused") else "")
        + f": {write['bytes'] / 2**20:,.0f} MB "
        f"({write['bytes'] / write['steps']:,.0f} B per step).",
        f"- TensorBoard printed its URL after {result['url_seconds']:.1f} s; "
        f"the run was fully loaded (last step and final findings served) "
        f"{result['load_seconds']:.0f} s after start.",
    ]
    served = result["served_steps"]
    counts = sorted(set(served.values()))
    gaps = result["served_gaps"]
    lines.append(
        f"- Steps served per series: {', '.join(f'{c:,}' for c in counts)} of "
        f"{result['steps']:,} written (reservoir of "
        f"{metadata.SAMPLES_PER_SERIES:,}), spanning steps "
        f"{result['served_first_last'][0]:,}–{result['served_first_last'][1]:,}; "
        f"gaps between served steps: median {gaps.get('median', 0):.0f}, "
        f"max {gaps.get('max', 0)}. Default heatmap columns: "
        f"{result['default_columns']}."
    )
    bursts = result.get("bursts")
    if bursts:
        lines.append(
            f"- Non-finite bursts (single steps): {bursts['written']} written, "
            f"{bursts['served']} served, {bursts['default_columns']} visible "
            "in the default heatmap (columns keep their worst count, but only "
            "of the steps the reservoir kept)."
        )
    for label, key in (("loaded", "rss_loaded"), ("after the timings", "rss_after"),
                       ("fresh, after one profile", "rss_fresh_after_profile")):
        if key not in result:
            continue
        parts = [
            f"{name} (pid {pid}) {rss / 1024:,.0f} MB (peak {hwm / 1024:,.0f} MB)"
            for pid, (name, rss, hwm) in result[key].items()
            if rss is not None
        ]
        lines.append(f"- TensorBoard RSS {label}: " + "; ".join(parts) + ".")
    lines += [
        "",
        "| route | first request s | median s | p95 s | max s | response KB | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in result["routes"]:
        verdict = []
        if t["median"] > TARGET_SECONDS:
            verdict.append(f"SLOW (median > {TARGET_SECONDS:g} s)")
        if t["first"] > TARGET_FIRST_SECONDS:
            verdict.append(f"first request > {TARGET_FIRST_SECONDS:g} s")
        lines.append(
            f"| {t['route']} | {t['first']:.3f} | {t['median']:.3f} | "
            f"{t['p95']:.3f} | {t['max']:.3f} | {t['bytes'] / 1024:,.1f} | "
            f"{'; '.join(verdict) or 'ok'} |"
        )
    slow = [t["route"] for t in result["routes"] if t["median"] > TARGET_SECONDS]
    cold = [t["route"] for t in result["routes"] if t["first"] > TARGET_FIRST_SECONDS]
    lines += [
        "",
        f"Routes with a median over {TARGET_SECONDS:g} s: "
        + (", ".join(slow) if slow else "none")
        + f". First (uncached) requests over {TARGET_FIRST_SECONDS:g} s: "
        + (", ".join(cold) if cold else "none") + ".",
    ]
    return "\n".join(lines)


# -- command line -------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Soak test: callback memory over many recorded steps, "
        "plugin latency on a 100,000-step run (see the module docstring)."
    )
    parser.add_argument("--part", choices=("all", "memory", "plugin"),
                        default="all", help="which part to run (default all)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"part A: recorded steps (default {DEFAULT_STEPS})")
    parser.add_argument("--plugin-steps", type=int, default=None,
                        help=f"part B: steps in the synthetic run (default "
                        f"{DEFAULT_PLUGIN_STEPS:,})")
    parser.add_argument("--layers", type=int, default=None,
                        help=f"watched layers, both parts (default {DEFAULT_LAYERS})")
    parser.add_argument("--logdir", help="where to write (default: a temporary "
                        "directory, removed at the end); kept if given")
    parser.add_argument("--reuse", action="store_true",
                        help="part B: reuse a complete synthetic run of the "
                        "same size already under --logdir")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"part B: timed requests per route after the "
                        f"first (default {DEFAULT_REPEATS})")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"part A: samples after the warm-up (default "
                        f"{DEFAULT_SAMPLES})")
    parser.add_argument("--warmup", type=int, default=None,
                        help="part A: steps before the first sample "
                        "(default a fifth of --steps, at most 500)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="part A: skip the Python-heap figures (tracemalloc "
                        "slows Python code down)")
    parser.add_argument("--trace-frames", type=int,
                        default=DEFAULT_TRACE_FRAMES,
                        help="part A: frames tracemalloc keeps per allocation "
                        f"(default {DEFAULT_TRACE_FRAMES}; more attributes "
                        "library allocations to gradwatch, and is slower)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="part A: stop training after this long and "
                        "report the steps run")
    parser.add_argument("--jit-compile", action="store_true",
                        help="part A: compile the train step with XLA")
    parser.add_argument("--load-timeout", type=float, default=3600,
                        help="part B: seconds to wait for TensorBoard to load")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke test; figures meaningless")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    quick = QUICK if args.quick else {}
    defaults = {
        "steps": quick.get("steps", DEFAULT_STEPS),
        "plugin_steps": quick.get("plugin_steps", DEFAULT_PLUGIN_STEPS),
        "repeats": quick.get("repeats", DEFAULT_REPEATS),
        "samples": quick.get("samples", DEFAULT_SAMPLES),
        "warmup": quick.get("warmup"),
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.plugin_layers = args.layers or quick.get("plugin_layers", DEFAULT_LAYERS)
    if args.layers is None:
        args.layers = quick.get("layers", DEFAULT_LAYERS)
    for name in ("steps", "plugin_steps", "layers", "samples"):
        if getattr(args, name) < 2:
            parser.error(f"--{name.replace('_', '-')} must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv=None):
    """Runs the soak test and prints the Markdown report.

    Returns:
        The process exit code: 0, or 1 if a plugin route's median latency
        exceeded `TARGET_SECONDS` (figures are printed either way).
    """
    args = parse_args(argv)
    results = {"machine": machine_info.description(), "argv": list(sys.argv[1:] if argv is None else argv)}
    started = time.perf_counter()
    temporary = None
    if args.logdir:
        root = os.path.abspath(args.logdir)
        os.makedirs(root, exist_ok=True)
    else:
        temporary = tempfile.TemporaryDirectory(prefix="gradwatch-soak-")
        root = temporary.name
    progress = not args.quick
    reports = [f"Machine: {results['machine']}."]
    try:
        if args.part in ("all", "memory"):
            memory_dir = os.path.join(root, "memory")
            if os.path.exists(memory_dir):
                shutil.rmtree(memory_dir)
            log(f"A: {args.steps:,} recorded steps, {args.layers} layers -> "
                f"{memory_dir}")
            results["memory"] = measure_memory(
                args.steps, args.layers, memory_dir, warmup=args.warmup,
                samples=args.samples, heap=not args.no_tracemalloc,
                heap_frames=args.trace_frames,
                max_seconds=args.max_minutes and 60 * args.max_minutes,
                jit_compile=args.jit_compile, progress=progress,
            )
            reports.append(memory_report(results["memory"]))
            log(reports[-1])
            _dump(args.out, results)
        if args.part in ("all", "plugin"):
            results["plugin"] = measure_plugin(
                os.path.join(root, "plugin"), args.plugin_steps,
                args.plugin_layers, repeats=args.repeats, reuse=args.reuse,
                load_timeout=args.load_timeout, progress=progress,
                # A second TensorBoard start: left out of the smoke run.
                fresh_profile=not args.quick,
            )
            reports.append(plugin_report(results["plugin"]))
            _dump(args.out, results)
    finally:
        if temporary is not None:
            temporary.cleanup()
    results["seconds"] = time.perf_counter() - started
    reports[0] += f" The soak took {results['seconds'] / 60:.1f} min."
    print("\n\n".join(reports))
    _dump(args.out, results)
    slow = [
        t for t in results.get("plugin", {}).get("routes", [])
        if t["median"] > TARGET_SECONDS
    ]
    return 1 if slow and not args.quick else 0


def _dump(path, results):
    if not path:
        return
    with open(path, "w") as out:
        json.dump(results, out, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main())
