"""`python -m gradwatch report LOG_DIR [--json] [--strict]`.

Prints the findings (`gradwatch.findings`) of a finished or running GradWatch
log dir, or of every run under a parent directory. Exit codes: 0 on success,
1 with `--strict` when any finding is a warning, 2 on a usage error or a
missing, empty or unreadable log dir.
"""

import argparse
import dataclasses
import json
import os
import sys

from gradwatch_tensorboard import storage

from . import findings as findings_lib
from . import reader

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_ERROR = 2


class _Error(Exception):
    """A user-facing error: printed on stderr, exit code 2."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m gradwatch",
        description="GradWatch command-line tools.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    report = commands.add_parser(
        "report",
        help="print the findings of a GradWatch log dir",
        description=(
            "Print the findings of a finished or running GradWatch log dir: "
            "named training problems (vanishing or exploding gradients, "
            "saturation, dying units, init mismatch, SELU drift, BatchNorm "
            "skew, NaN/Inf) with the layers and steps concerned and a remedy. "
            "LOG_DIR is the log_dir given to GradWatch, or a parent "
            "directory: then every run under it is reported."
        ),
        epilog=(
            "Exit status: 0 on success; 1 with --strict when any finding is "
            "a warning; 2 when LOG_DIR is missing, holds no GradWatch data, "
            "or the arguments are wrong."
        ),
    )
    report.add_argument("log_dir", metavar="LOG_DIR", help="GradWatch log dir, or a parent of several")
    report.add_argument(
        "--json",
        action="store_true",
        help=(
            "print a JSON list of findings (rule, severity, layers, "
            "first_step, last_step, message, remedy, metric, run, ...)"
        ),
    )
    report.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any finding is a warning (for CI)",
    )
    report.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=(
            "override a threshold of gradwatch.findings.Thresholds, e.g. "
            "--threshold vanishing_ratio=1e-4 (repeatable)"
        ),
    )
    return parser


def _thresholds(overrides):
    fields = {f.name: f for f in dataclasses.fields(findings_lib.Thresholds)}
    values = {}
    for item in overrides:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise _Error(
                f"bad --threshold {item!r}: expected NAME=VALUE with NAME one "
                f"of {', '.join(fields)}"
            )
        kind = int if fields[name].type in (int, "int") else float
        try:
            values[name] = kind(raw)
        except ValueError:
            raise _Error(f"bad --threshold {item!r}: {raw!r} is not a number") from None
    try:
        return findings_lib.Thresholds(**values)
    except ValueError as e:
        raise _Error(str(e)) from None


def _has_events(directory):
    try:
        names = storage.listdir(directory)
    except OSError:
        return False
    return any("tfevents" in name for name in names)


def find_runs(log_dir):
    """`[(name, Recording)]` of LOG_DIR itself and/or every run under it.

    Raises:
        _Error: if LOG_DIR is missing or no directory in it holds GradWatch
            data.
    """
    if not storage.exists(log_dir):
        raise _Error(f"no such log directory: {log_dir}")
    if not storage.isdir(log_dir):
        raise _Error(f"not a directory: {log_dir}")
    runs = []
    problems = []
    for directory, subdirs, _ in storage.walk(log_dir):
        subdirs.sort()
        if not _has_events(directory):
            continue
        try:
            recording = reader.load(directory)
        except ValueError:
            continue  # Event files, but not GradWatch's (another tool's run).
        except OSError as e:
            problems.append(f"{directory}: {e}")
            continue
        name = _run_name(log_dir, directory)
        runs.append((name, recording))
    if not runs:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise _Error(
            f"no GradWatch data in {log_dir}: no event file there or in its "
            "subdirectories holds GradWatch summaries. Pass the log_dir given "
            f"to GradWatch, or a directory above it{detail}"
        )
    return runs


def _run_name(log_dir, directory):
    """`directory`'s name under `log_dir`, or `log_dir`'s own name."""
    if storage.is_remote(log_dir):
        top = log_dir.rstrip("/")
        relative = directory.rstrip("/")[len(top):].lstrip("/")
        return relative or top.rsplit("/", 1)[-1]
    relative = os.path.relpath(directory, log_dir)
    if relative == os.curdir:
        return os.path.basename(os.path.normpath(os.path.abspath(log_dir)))
    return relative.replace(os.sep, "/")


def _describe(recording):
    steps = recording.steps
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}\u2013{steps[-1]}"
    return f"{len(recording.layers)} layers, {len(steps)} recorded ({span})"


def _run_report(args, out, err):
    try:
        thresholds = _thresholds(args.threshold)
        runs = find_runs(args.log_dir)
    except _Error as e:
        print(f"gradwatch report: error: {e}", file=err)
        return EXIT_ERROR
    results = [(name, rec, rec.findings(thresholds)) for name, rec in runs]
    warnings = sum(
        f.severity == findings_lib.WARNING for _, _, found in results for f in found
    )
    if args.json:
        listing = []
        for name, _, found in results:
            for f in found:
                listing.append({**f.to_json(), "run": name})
        out.write(json.dumps(listing, indent=2, ensure_ascii=False) + "\n")
    else:
        lines = []
        for index, (name, rec, found) in enumerate(results):
            if index:
                lines.append("")
            tally = findings_lib.counts(found)
            lines.append(
                f"{name}: {_describe(rec)} \u2014 {tally['warning']} warning(s), "
                f"{tally['info']} info"
            )
            if not found:
                lines.append("  no findings")
            for f in found:
                lines.append(f"  {f.severity.upper():<7} {f.rule}: {f.message}")
                lines.append(f"          remedy: {f.remedy}")
        out.write("\n".join(lines) + "\n")
    out.flush()
    if args.strict and warnings:
        return EXIT_WARNINGS
    return EXIT_OK


def main(argv=None, out=None, err=None):
    """`python -m gradwatch COMMAND ...`; returns the exit code.

    Argument errors and `--help` exit through argparse (`SystemExit`, with
    status 2 and 0).
    """
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    if args.command == "report":
        return _run_report(args, out, err)
    return EXIT_ERROR  # pragma: no cover (argparse knows every command)


if __name__ == "__main__":
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
    sys.exit(main())
