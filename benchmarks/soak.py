"""Long runs: does the callback's memory stay bounded, and do the plugin's
responses stay under 200 ms, at 100,000 recorded steps x 200 layers and at
10,000 x 500?

Usage (from the repository root):

    python -m benchmarks.soak                       # both parts, defaults
    python -m benchmarks.soak --part memory --steps 6000
    python -m benchmarks.soak --part plugin --plugin-steps 100000 \\
        --logdir /tmp/soak                          # keeps the log for reuse
    python -m benchmarks.soak --quick               # a smoke run, ~30 s

Part A, callback memory (`benchmarks/soak_memory.py`): trains with
`GradWatch(update_freq=1)` and samples the process's memory, the Python heap
gradwatch allocated and the containers the callback holds, reporting each
one's growth per recorded step.

Part B, plugin latency (`benchmarks/soak_plugin.py`): writes a synthetic run
of that size, serves it with the stock `tensorboard` and times every route
(first request and median), as the page and scripts ask.

The measuring tools both use are in `benchmarks/memory_probes.py`.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine as machine_info  # noqa: E402
from benchmarks.memory_probes import DEFAULT_TRACE_FRAMES  # noqa: E402
from benchmarks.soak_memory import (  # noqa: E402
    DEFAULT_SAMPLES,
    DEFAULT_STEPS,
    measure_memory,
    memory_report,
)
from benchmarks.soak_plugin import (  # noqa: E402
    DEFAULT_PLUGIN_STEPS,
    DEFAULT_REPEATS,
    TARGET_SECONDS,
    log,
    measure_plugin,
    plugin_report,
)

DEFAULT_LAYERS = 200
QUICK = dict(
    steps=240, layers=6, plugin_steps=600, plugin_layers=12, warmup=60,
    samples=4, repeats=1,
)


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
