"""How long `python -m gradwatch report LOG_DIR` takes, in a fresh process.

Usage (from the repository root):

    python -m demo --no-tensorboard --logdir /tmp/gallery   # once
    python -m benchmarks.report_cli /tmp/gallery --rounds 7

Each round runs, in a shuffled order, a new process for each condition:

- `report`: `python -m gradwatch report LOG_DIR`, as a user types it;
- `report after import tensorflow`: the same in a process that imports
  TensorFlow first, which is what reading event files through TensorBoard's
  TensorFlow-backed loader cost;
- `python -c pass`: the interpreter's own start-up, the floor.

It prints, per condition, the median over rounds of the wall time and of the
child process's CPU time (user + system, from `resource.getrusage`).
"""

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time


def _conditions(log_dir):
    report = ["-m", "gradwatch", "report", log_dir]
    after_tf = [
        "-c",
        "import sys, tensorflow; from gradwatch.__main__ import main; "
        f"sys.exit(main(['report', {log_dir!r}]))",
    ]
    return {
        "report": report,
        "report after import tensorflow": after_tf,
        "python -c pass": ["-c", "pass"],
    }


def _run(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{args} exited with {done.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_cli")
    parser.add_argument("log_dir", help="a GradWatch log dir, e.g. the demo gallery")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    conditions = _conditions(args.log_dir)
    times = {name: [] for name in conditions}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(conditions)
        rng.shuffle(order)
        for name in order:
            times[name].append(_run(conditions[name]))
    print(f"| condition ({args.rounds} rounds) | median wall s | median CPU s |")
    print("|---|---|---|")
    for name, samples in times.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
