"""Soak, part A: does the callback's memory stay bounded over many recorded
steps? (`python -m benchmarks.soak --part memory`.)

Trains a `--layers`-deep narrow MLP (Dense width 8,
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
"""

import gc
import math
import time
import tracemalloc

import numpy as np

from benchmarks.machine import status_kb
from benchmarks.memory_probes import (
    DEFAULT_TRACE_FRAMES,
    container_sizes,
    directory_bytes,
    growing_containers,
    package_heap,
    package_roots,
    slope,
)

# About ten minutes at ~80 ms per recorded step with 200 layers.
DEFAULT_STEPS = 6000
PROJECT_STEPS = 100_000
# Samples taken after the warm-up.
DEFAULT_SAMPLES = 24
WIDTH = 8
BATCH_SIZE = 4
STEPS_PER_EPOCH = 500


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
