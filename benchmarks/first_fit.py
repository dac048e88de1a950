"""What a user pays the first time: the first `fit` of a fresh model, in a
fresh process, with and without GradWatch, and a new GradWatch on a model
that has trained already.

Usage (from the repository root):

    python -m benchmarks.first_fit                     # every model, 3 rounds
    python -m benchmarks.first_fit --models mlp_20x256_bn --rounds 5
    python -m benchmarks.first_fit --quick              # a smoke run

Method.

- **First fit.** Each run is a new Python process (nothing traced or
  compiled survives between runs), which builds the model, compiles it (XLA
  "auto", as Keras' default) and trains `STEPS` steps with one `fit` call, with
  no callback or with `GradWatch` at its default cadence. The process reports
  the CPU time (`time.process_time`) and wall time from building the model to
  the end of `fit`, and the parent adds the whole process's CPU time
  (imports included, from `resource.getrusage`). Conditions alternate within
  each round in a shuffled order; a cell is the median over rounds of the
  per-round ratio GradWatch / plain.
- **A new GradWatch on a trained model** (a notebook cell run again). In one
  process: a model is trained once with a GradWatch (which traces) and once
  plainly; then each round runs, in a shuffled order, a plain `fit` and a
  `fit` with a GradWatch made anew (same layers, default cadence), both of
  `REFIT_EPOCHS` x `STEPS_PER_EPOCH` steps. It also counts the traces the new
  GradWatch caused (0 is the aim).
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STEPS = 32
REFIT_EPOCHS = 2
STEPS_PER_EPOCH = 128
DEFAULT_ROUNDS = 3
MODELS = ("mlp_20x256_bn", "cnn_bn", "resnet50")
TARGET_FIRST_FIT = 1.3
TARGET_REFIT = 1.05


def _build(key):
    """`(model, input shape, batch size)`; imports Keras on first use."""
    import keras

    from benchmarks import overhead

    if key == "resnet50":
        model = keras.applications.ResNet50(
            input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None
        )
        return model, (32, 32, 3), 32
    if key == "tiny_mlp":
        spec = overhead.QUICK_MODEL
    else:
        spec = overhead.MODELS[key]
    return spec.build(), spec.input_shape, spec.batch_size


def _compiled(key):
    import keras

    model, shape, batch = _build(key)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, shape, batch


def _data(shape, batch, steps, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * batch, *shape)).astype(np.float32)
    return x, rng.integers(0, 10, steps * batch)


def child(key, condition, steps):
    """One first fit, in this (fresh) process; prints a JSON line."""
    import keras

    import gradwatch

    keras.utils.set_random_seed(0)
    start = (time.perf_counter(), time.process_time())
    model, shape, batch = _compiled(key)
    x, y = _data(shape, batch, steps)
    callbacks = []
    if condition == "gradwatch":
        callbacks = [gradwatch.GradWatch(tempfile.mkdtemp(), verbose=0)]
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    print(json.dumps({
        "wall": time.perf_counter() - start[0],
        "cpu": time.process_time() - start[1],
    }))


def _run_child(key, condition, steps):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_fit", "--child", key, condition, str(steps)],
        capture_output=True, text=True, check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"{key}/{condition} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def first_fit(keys, rounds, steps, log):
    """Per model: medians over rounds of GradWatch / plain, fresh processes."""
    results = {}
    shuffler = random.Random(0)
    for key in keys:
        runs = {"plain": [], "gradwatch": []}
        for r in range(rounds):
            order = list(runs)
            shuffler.shuffle(order)
            for condition in order:
                runs[condition].append(_run_child(key, condition, steps))
            log(f"  {key}: round {r + 1}/{rounds}: plain {runs['plain'][-1]['cpu']:.1f} s CPU, "
                f"GradWatch {runs['gradwatch'][-1]['cpu']:.1f} s CPU")
        results[key] = {
            field: {
                "plain": _median([run[field] for run in runs["plain"]]),
                "gradwatch": _median([run[field] for run in runs["gradwatch"]]),
                "ratio": _median([g[field] / p[field] for p, g in zip(runs["plain"], runs["gradwatch"])]),
            }
            for field in ("cpu", "wall", "process_cpu")
        }
    return results


def refit(key, rounds, log, steps_per_epoch=STEPS_PER_EPOCH, epochs=REFIT_EPOCHS):
    """A GradWatch made anew on a trained model, against a plain fit."""
    import gradwatch
    from gradwatch import hooks

    model, shape, batch = _compiled(key)
    x, y = _data(shape, batch, steps_per_epoch)
    workdir = tempfile.mkdtemp()

    def fit(callbacks):
        start = (time.perf_counter(), time.process_time())
        model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=callbacks)
        return time.perf_counter() - start[0], time.process_time() - start[1]

    fit([gradwatch.GradWatch(os.path.join(workdir, "first"), verbose=0)])
    fit([])
    traces_before = hooks.Capture.traces
    times = {"plain": [], "gradwatch": []}
    shuffler = random.Random(1)
    for r in range(rounds):
        order = list(times)
        shuffler.shuffle(order)
        for condition in order:
            callbacks = []
            if condition == "gradwatch":
                callbacks = [gradwatch.GradWatch(os.path.join(workdir, f"again_{r}"), verbose=0)]
            times[condition].append(fit(callbacks))
        log(f"  {key} refit: round {r + 1}/{rounds}")
    return {
        "traces": hooks.Capture.traces - traces_before,
        "wall_ratio": _median([g[0] / p[0] for p, g in zip(times["plain"], times["gradwatch"])]),
        "cpu_ratio": _median([g[1] / p[1] for p, g in zip(times["plain"], times["gradwatch"])]),
        "plain_cpu": _median([p[1] for p in times["plain"]]),
    }


def report(first, again, steps, rounds):
    from benchmarks import overhead

    lines = [
        f"Machine: {overhead.machine()}.",
        "",
        f"First `fit` of a fresh model ({steps} steps, GradWatch at its default cadence), "
        f"a new process per run, medians of {rounds} interleaved rounds:",
        "",
        "| model | plain: fit CPU s / wall s | GradWatch: fit CPU s / wall s "
        "| ratio: fit CPU / wall / whole-process CPU | target |",
        "|---|---|---|---|---|",
    ]
    for key, r in first.items():
        verdict = "met" if r["cpu"]["ratio"] <= TARGET_FIRST_FIT else "MISSED"
        lines.append(
            f"| {key} | {r['cpu']['plain']:.1f} / {r['wall']['plain']:.1f} "
            f"| {r['cpu']['gradwatch']:.1f} / {r['wall']['gradwatch']:.1f} "
            f"| {r['cpu']['ratio']:.2f}× / {r['wall']['ratio']:.2f}× / {r['process_cpu']['ratio']:.2f}× "
            f"| ≤ {TARGET_FIRST_FIT}×: {verdict} |"
        )
    if again:
        lines += [
            "",
            f"A new GradWatch on a trained model ({REFIT_EPOCHS} epochs x {STEPS_PER_EPOCH} "
            f"steps per fit), medians of {rounds} interleaved rounds:",
            "",
            "| model | new traces | plain fit CPU s | ratio: CPU / wall | target |",
            "|---|---|---|---|---|",
        ]
        for key, r in again.items():
            verdict = "met" if r["cpu_ratio"] <= TARGET_REFIT and r["traces"] == 0 else "MISSED"
            lines.append(
                f"| {key} | {r['traces']} | {r['plain_cpu']:.2f} | {r['cpu_ratio']:.2f}× / "
                f"{r['wall_ratio']:.2f}× | ≤ {TARGET_REFIT}×, no trace: {verdict} |"
            )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="a smoke run on a tiny MLP")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    def log(text):
        print(text, file=sys.stderr, flush=True)

    if args.quick:
        keys, rounds, steps = ["tiny_mlp"], 1, 4
        first = first_fit(keys, rounds, steps, log)
        again = {"tiny_mlp": refit("tiny_mlp", 1, log, steps_per_epoch=4, epochs=1)}
    else:
        keys, rounds, steps = args.models, args.rounds, STEPS
        first = first_fit(keys, rounds, steps, log)
        again = {k: refit(k, rounds, log) for k in keys if k != "resnet50"}
    print(report(first, again, steps, rounds))
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"first_fit": first, "refit": again}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
