"""Starts the real `tensorboard` binary on a free loopback port, for tests."""

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request


class TensorBoardProcess:
    """`tensorboard --logdir LOG_DIR --port 0` on 127.0.0.1, as a user runs it.

    Args:
        log_dir: The directory to serve.
        extra_args: More command-line flags (none in the stock case).

    Example:

    >>> with TensorBoardProcess(log_dir) as tb:
    ...     urllib.request.urlopen(tb.url + "data/plugins_listing")
    """

    def __init__(self, log_dir, extra_args=()):
        self.log_dir = str(log_dir)
        self.extra_args = list(extra_args)
        self.url = None
        self._process = None

    def __enter__(self):
        binary = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or shutil.which("tensorboard")
        command = [binary, "--logdir", self.log_dir, "--port", "0", "--host", "127.0.0.1",
                   "--reload_interval", "1", *self.extra_args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.time() + 90
        output = []
        while time.time() < deadline:
            line = self._process.stdout.readline()
            if not line:
                if self._process.poll() is not None:
                    break
                continue
            output.append(line)
            match = re.search(r"(http://[^\s]+/)", line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            self.__exit__(None, None, None)
            raise RuntimeError("tensorboard did not start:\n" + "".join(output))
        # Drain the rest of its output so the pipe never blocks it.
        import threading

        threading.Thread(target=self._process.stdout.read, daemon=True).start()
        return self

    def get(self, path):
        """`(status, body bytes)` of a GET on this TensorBoard."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
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
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
