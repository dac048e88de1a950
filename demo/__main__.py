"""`python -m demo`: train the gallery of training pathologies, then open
TensorBoard on it.

Usage (from the repository root):

    python -m demo                      # full gallery into runs/gallery, then TensorBoard
    python -m demo --quick --no-tensorboard
    python -m demo --runs 01_sigmoid_standard_init 03_relu_he_init --logdir /tmp/g
"""

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

DEFAULT_LOGDIR = os.path.join("runs", "gallery")
DEFAULT_PORT = 6006
# TensorBoard needs several seconds to start on a slow machine.
TENSORBOARD_START_TIMEOUT = 120.0


def parse_args(argv=None):
    """Parses the command line.

    Args:
        argv: Arguments without the program name; default `sys.argv[1:]`.
    """
    # Import only the spec list here: `--help` should not load TensorFlow.
    from demo.gallery import RUN_NAMES

    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=(
            "Train a gallery of small deep MLPs, each showing one lesson of "
            "training health (vanishing and exploding gradients, saturation, "
            "dying ReLUs, self-normalisation, BatchNorm, clipping), with "
            "GradWatch attached; then open TensorBoard on them."
        ),
    )
    parser.add_argument(
        "--logdir",
        default=DEFAULT_LOGDIR,
        help=f"log dir of the gallery, one run per sub-directory "
        f"(default: {DEFAULT_LOGDIR})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="for tests: shallower nets, few steps, and (without --runs) only "
        "the runs whose lesson the tests check",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUN_NAMES,
        metavar="RUN",
        help="train only these runs (default: all): " + ", ".join(RUN_NAMES),
    )
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="do not launch TensorBoard at the end",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TensorBoard port on localhost (default: {DEFAULT_PORT})",
    )
    return parser.parse_args(argv)


def print_guide(specs, out=sys.stdout):
    """Prints, per run, what it demonstrates and where to look."""
    print("\nWhat to look at (GradWatch tab, one heatmap per metric):", file=out)
    for spec in specs:
        print(f"\n  {spec.name}", file=out)
        for label, text in (("lesson", spec.lesson), ("look at", spec.look_at)):
            lines = textwrap.wrap(text, width=88 - 14)
            print(f"    {label + ':':<10}{lines[0]}", file=out)
            for line in lines[1:]:
                print(f"    {'':<10}{line}", file=out)


def serve_tensorboard(logdir, port):
    """Runs TensorBoard on `logdir`, bound to localhost, until Ctrl+C.

    Args:
        logdir: The gallery's log dir.
        port: Port on localhost.

    Returns:
        0 after a Ctrl+C, or TensorBoard's non-zero exit code if it fails.
    """
    url = f"http://localhost:{port}/"
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        logdir,
        "--host",
        "localhost",
        "--port",
        str(port),
    ]
    print(f"\nStarting TensorBoard: {' '.join(command[2:])}", flush=True)
    process = subprocess.Popen(command)
    # Stop TensorBoard on `kill` too, not only on Ctrl+C.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        deadline = time.monotonic() + TENSORBOARD_START_TIMEOUT
        while not _responds(url):
            if process.poll() is not None:
                print(
                    f"TensorBoard exited with code {process.returncode} (is "
                    f"port {port} in use? try --port). The runs are in "
                    f"{logdir}.",
                    file=sys.stderr,
                )
                return process.returncode or 1
            if time.monotonic() > deadline:
                print(f"TensorBoard has not answered at {url} yet.", file=sys.stderr)
                break
            time.sleep(0.5)
        print(
            f"\nOpen {url}#gradwatch  (GradWatch tab; Scalars has the "
            "headline numbers). Ctrl+C stops TensorBoard.",
            flush=True,
        )
        process.wait()
        return process.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _responds(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def main(argv=None):
    """Trains the gallery, prints its summary table, then serves TensorBoard.

    Args:
        argv: Arguments without the program name; default `sys.argv[1:]`.

    Returns:
        The process exit code.
    """
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from demo import gallery

    names = args.runs or (gallery.QUICK_RUNS if args.quick else gallery.RUN_NAMES)
    specs = [gallery.get_spec(name) for name in names]
    mode = "quick" if args.quick else "full"
    print(
        f"Training {len(specs)} gallery runs ({mode} mode) into {args.logdir}",
        flush=True,
    )
    start = time.perf_counter()

    def progress(index, total, summary):
        print(
            f"[{index:2d}/{total}] {summary.name:<30} {summary.seconds:5.1f} s"
            f"   loss {summary.final_loss:7.3f}"
            f"   ({time.perf_counter() - start:4.0f} s elapsed)",
            flush=True,
        )

    summaries = gallery.run_gallery(
        args.logdir,
        quick=args.quick,
        names=[spec.name for spec in specs],
        progress=progress,
    )
    print(f"\nTrained in {time.perf_counter() - start:.0f} s.\n")
    print(gallery.format_table(summaries))
    print(
        "\nsaturation/dead: worst layer at the last record; grad var first/"
        "last: backward\nvariance ratio, first over last hidden layer (<< 1 "
        "vanishing, >> 1 exploding);\nact ranges: over hidden layers at the "
        "last record."
    )
    print_guide(specs)
    if args.no_tensorboard:
        print(f"\nTo browse the runs: tensorboard --logdir {args.logdir}")
        return 0
    return serve_tensorboard(args.logdir, args.port)


if __name__ == "__main__":
    sys.exit(main())
