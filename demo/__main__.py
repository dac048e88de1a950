"""`python -m demo`: open TensorBoard, then train the gallery of training
pathologies into it, so that the GradWatch tab fills in as the runs train.

Usage (from the repository root):

    python -m demo                      # TensorBoard, then the full gallery into runs/gallery
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
            "GradWatch attached, while TensorBoard shows them as they train."
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
        help="train only; do not launch TensorBoard",
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


class TensorBoard:
    """TensorBoard on `logdir`, bound to localhost, in a child process.

    Args:
        logdir: The gallery's log dir (made if missing, so that TensorBoard
            can watch it before the first run writes).
        port: Port on localhost.
    """

    def __init__(self, logdir, port):
        self.logdir = logdir
        self.port = port
        self.url = f"http://localhost:{port}/"
        self.process = None

    def start(self):
        """Starts TensorBoard and waits until it answers.

        Returns:
            None once it answers (or has not yet, after
            `TENSORBOARD_START_TIMEOUT`), else TensorBoard's exit code if it
            failed to start.
        """
        os.makedirs(self.logdir, exist_ok=True)
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", self.logdir,
                   "--host", "localhost", "--port", str(self.port)]
        print(f"Starting TensorBoard: {' '.join(command[2:])}", flush=True)
        self.process = subprocess.Popen(command)
        deadline = time.monotonic() + TENSORBOARD_START_TIMEOUT
        while not _responds(self.url):
            if self.process.poll() is not None:
                print(
                    f"TensorBoard exited with code {self.process.returncode} (is "
                    f"port {self.port} in use? try --port, or --no-tensorboard).",
                    file=sys.stderr,
                )
                return self.process.returncode or 1
            if time.monotonic() > deadline:
                print(f"TensorBoard has not answered at {self.url} yet.", file=sys.stderr)
                break
            time.sleep(0.5)
        print(
            f"\nOpen {self.url}#gradwatch  (GradWatch tab; Scalars has the "
            "headline numbers). The runs appear as they train.\n",
            flush=True,
        )
        return None

    def wait(self):
        """Serves until Ctrl+C (or `kill`); returns the exit code."""
        print(f"\nTensorBoard is still at {self.url}#gradwatch. Ctrl+C stops it.", flush=True)
        try:
            self.process.wait()
            return self.process.returncode
        except KeyboardInterrupt:
            return 0

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _responds(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def main(argv=None):
    """Starts TensorBoard, trains the gallery into it, prints its summary
    table, then serves until Ctrl+C.

    Args:
        argv: Arguments without the program name; default `sys.argv[1:]`.

    Returns:
        The process exit code.
    """
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from demo import gallery

    board = None if args.no_tensorboard else TensorBoard(args.logdir, args.port)
    # Stop TensorBoard on `kill` too, not only on Ctrl+C.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if board is not None:
            failed = board.start()
            if failed is not None:
                return failed
        _train(args, gallery)
        if board is None:
            print(f"\nTo browse the runs: tensorboard --logdir {args.logdir}")
            return 0
        return board.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if board is not None:
            board.stop()


def _train(args, gallery):
    """Trains the chosen runs, printing each as it ends, then the summary
    table and what to look at."""
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


if __name__ == "__main__":
    sys.exit(main())
