"""Measuring memory over a long run: the processes of a tree, the sizes of the
containers an object holds, the Python heap a package allocated, and the
growth slope of a series of samples. Used by the soak's two parts
(`soak_memory`, `soak_plugin`)."""

import collections
import math
import os

import numpy as np


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


def directory_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
