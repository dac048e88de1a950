"""Where log dirs live: every path operation of GradWatch goes through here.

A path with a scheme (`gs://bucket/runs`, `s3://...`, `hdfs://...`, and
TensorFlow's in-memory `ram://`) is remote storage, reached through
TensorFlow's `tf.io.gfile`, as Keras' own `TensorBoard` callback does. Any
other path is local and uses the standard library, so reading a local log
dir (`gradwatch.load`, `python -m gradwatch report`) never loads TensorFlow.
"""

import builtins
import os
import uuid


def is_remote(path):
    """Whether `path` names remote storage (`scheme://...`)."""
    return "://" in os.fspath(path)


def _tensorflow(path):
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            f"The log dir {path!r} is remote storage, which GradWatch reaches "
            "through TensorFlow's tf.io.gfile; install tensorflow, or use a "
            "local directory."
        ) from e
    return tf


def _remote(operation, path, *args):
    """`tf.io.gfile.<operation>(path, *args)`, its errors as `OSError`s
    (`FileNotFoundError` for a missing path), as the local calls raise."""
    tf = _tensorflow(path)
    try:
        return getattr(tf.io.gfile, operation)(path, *args)
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(f"{path}: {e.message}") from e
    except tf.errors.OpError as e:
        raise OSError(f"{path}: {e.message}") from e


def join(directory, *names):
    """`directory/name/...` (a remote path keeps its `scheme://`)."""
    if is_remote(directory):
        return "/".join([directory.rstrip("/"), *names])
    return os.path.join(directory, *names)


def exists(path):
    if is_remote(path):
        return _remote("exists", path)
    return os.path.exists(path)


def isdir(path):
    if is_remote(path):
        return _remote("isdir", path)
    return os.path.isdir(path)


def makedirs(path):
    """Creates `path` and its parents; nothing if it exists."""
    if is_remote(path):
        _remote("makedirs", path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path):
    """Names in directory `path` (no trailing `/`)."""
    if is_remote(path):
        return [name.rstrip("/") for name in _remote("listdir", path)]
    return os.listdir(path)


def walk(top):
    """Like `os.walk(top)`, top-down: sorting `subdirs` in place orders the
    walk."""
    if not is_remote(top):
        yield from os.walk(top)
        return
    for directory, subdirs, files in _remote("walk", top):
        subdirs[:] = [name.rstrip("/") for name in subdirs]
        yield directory, subdirs, files


def open(path, mode="rb"):  # noqa: A001 (the module's own `open`)
    """A file object for `path`, opened with `mode` (`"rb"`, `"wb"`, ...)."""
    if is_remote(path):
        return _remote("GFile", path, mode)
    return builtins.open(path, mode)


def remove(path):
    if is_remote(path):
        _remote("remove", path)
    else:
        os.remove(path)


def check_writable(directory):
    """Creates `directory` if missing and proves a file can be written there.

    Raises:
        OSError: if it cannot, with the filesystem's reason.
    """
    probe = join(directory, f".gradwatch-write-test-{uuid.uuid4().hex}")
    makedirs(directory)
    try:
        with open(probe, "wb") as f:
            f.write(b"")
    except OSError:
        raise
    except Exception as e:  # a remote file's tf.errors.OpError
        raise OSError(f"{probe}: {e}") from e
    remove(probe)
