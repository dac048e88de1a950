"""Soak, part B: do the plugin's responses stay under 200 ms on long runs?
(`python -m benchmarks.soak --part plugin`.)

Writes a synthetic run of `--plugin-steps` recorded
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

import json
import math
import os
import shutil
import statistics
import sys
import time
import urllib.parse

import numpy as np

from benchmarks.machine import status_kb
from benchmarks.memory_probes import _command_name, directory_bytes, process_tree
from benchmarks.soak_memory import WIDTH
from benchmarks.tensorboard_process import TensorBoardProcess
from gradwatch_tensorboard import metadata  # no TensorFlow
from gradwatch_tensorboard.summary import SummaryWriter

DEFAULT_PLUGIN_STEPS = 100_000
# The plugin's targets (issue 11): a route's median, and its first request.
TARGET_SECONDS = 0.2
TARGET_FIRST_SECONDS = 0.5
DEFAULT_REPEATS = 20
# The callback rewrites its findings document every this many records
# (`callback._LiveFindings.DOCUMENT_EVERY`).
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


def log(text):
    print(text, file=sys.stderr, flush=True)


def layer_names(layers):
    names = [f"dense_{i}" for i in range(layers - 1)]
    return names + ["head"]


def synthetic_rows(start, count, layers, rng):
    """Metric values for steps `start..start+count-1`: a float32 array
    `[count, metrics, layers]` in `metadata.METRIC_NAMES` order.

    Layers alternate tanh (saturation applies) and ReLU (dead units apply);
    every 10th layer is a BatchNormalization (the BN metrics apply to it
    alone); values drift with the step and differ per layer; about 0.1% of
    the remaining cells are NaN (at least one per metric), and one step in 5,000 has non-finite counts.
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
    out[:, col["distance_from_init"]] = 10.0 ** (-2.0 + 0.5 * np.log10(1.0 + steps) + 0.05 * noise())
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
    # And one in every metric, so that a short run has some too.
    metrics = np.arange(len(names))
    holes[(metrics * 7919) % count, metrics, metrics % layers] = True
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
            # Read from the binary header: a JSON request now would make the
            # JSON route's first request below a repeat.
            body = binary_header(tb.timed_get(path)[1])
            served[metric] = body["total_steps"]
            timing["columns"] = body["columns"]
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
        result["default_columns"] = served_steps["columns"] if served_steps else None
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
    # A script's first request, with nothing listed before it: the profile
    # builds the run's step index itself.
    log("B: restarting tensorboard for a profile as the first GradWatch request")
    with TensorBoard(plugin_dir) as tb:
        wait_until_loaded_quietly(tb, run, steps - 1, load_timeout)
        path = f"data/plugin/gradwatch/profile?run={_quote(run)}&step={step}"
        routes.append((f"profile (step {step}) on a fresh server, every metric, "
                       "before any other GradWatch request", time_route(tb, path, repeats)))
    result["routes"] = [dict(t, route=name) for name, t in routes]
    return result


def wait_until_loaded_quietly(tb, run, last_step, timeout):
    """Like `wait_until_loaded`, but asks TensorBoard's own scalars route
    (for a headline scalar, written with every step), not GradWatch's."""
    # Under either tag scheme: a reused run may be an older version's.
    tags = metadata.tags_for_reading(metadata.tag(metadata.HEADLINE, HEADLINES[0]))
    paths = [f"data/plugin/scalars/scalars?run={_quote(run)}&tag={_quote(t)}" for t in tags]
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in paths:
            status, body = tb.get(path, timeout=120)
            if status == 200 and json.loads(body) and json.loads(body)[-1][1] == last_step:
                return time.perf_counter() - tb.started
        time.sleep(1.0)
    raise TimeoutError(f"run {run!r} not fully loaded within {timeout} s")


def binary_header(body):
    """The JSON header of a binary heatmap (docs/http_api.md)."""
    length = int.from_bytes(body[:4], "little")
    return json.loads(body[4:4 + length])


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
