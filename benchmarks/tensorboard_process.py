"""Starts the real `tensorboard` binary on a free loopback port, for the
tests and the soak benchmark."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


class TensorBoardProcess:
    """`tensorboard --logdir LOG_DIR --port 0` on 127.0.0.1, as a user runs it
    (with `--reload_interval 1`, so that new data shows within a second).

    Args:
        log_dir: The directory to serve.
        extra_args: More command-line flags (none in the stock case).
        start_timeout: Seconds to wait for it to print its URL.

    Example:

    >>> with TensorBoardProcess(log_dir) as tb:
    ...     urllib.request.urlopen(tb.url + "data/plugins_listing")
    """

    def __init__(self, log_dir, extra_args=(), start_timeout=90):
        self.log_dir = str(log_dir)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.url = None
        self.process = None
        self.started = None  # `time.perf_counter()` at launch
        self.output = []  # the last lines it printed

    def __enter__(self):
        binary = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or shutil.which("tensorboard")
        command = [binary, "--logdir", self.log_dir, "--port", "0", "--host", "127.0.0.1",
                   "--reload_interval", "1", *self.extra_args]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            match = re.search(r"(http://[^\s]+/)", line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            self.__exit__(None, None, None)
            raise RuntimeError("tensorboard did not start:\n" + "".join(self.output))

        def drain():
            # Read the rest of its output so the pipe never blocks it.
            for line in self.process.stdout:
                self.output.append(line)
                del self.output[:-200]

        threading.Thread(target=drain, daemon=True).start()
        return self

    def get(self, path, timeout=60):
        """`(status, body bytes)` of a GET on this TensorBoard."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_for(self, predicate, timeout=60):
        """Polls `predicate()` until it is truthy; returns its value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError("condition not met within %ss" % timeout)

    def __exit__(self, *exc):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
