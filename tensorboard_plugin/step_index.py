"""Where each recorded step of a run lies in its event files.

The depth profile needs every metric at one step. Through TensorBoard's data
provider that means reading each metric's whole series (about 0.1 s each at
500 layers x 10,000 steps, 19 of them); here it is one event, read from the
file at an offset found in an index of the run's frames. The index holds
four integers per frame, is built by skipping from frame header to frame
header (reading the first bytes of each payload for its step), and grows
from where it stopped as the files grow.
"""

import array
import os
import threading

import numpy as np


from . import records, storage

# Enough of an Event's payload for its step: the wall time (tag + 8 bytes)
# and the step (tag + a varint of at most 10 bytes).
_STEP_BYTES = 20


def event_step(head):
    """The `step` of a serialised `Event` from its first bytes.

    Protocol buffers write fields in number order: `wall_time` (1, a double)
    then `step` (2, a varint); a step of 0 is not written at all.

    Args:
        head: The payload's first `_STEP_BYTES` bytes (or all of a shorter one).

    Returns:
        The step, an int.

    Example:

    >>> event_step(event_pb2.Event(wall_time=1.0, step=300).SerializeToString())
    300
    """
    at = 9 if head[:1] == b"\x09" else 0
    if head[at:at + 1] != b"\x10":
        return 0
    step, shift = 0, 0
    for byte in head[at + 1:at + 11]:
        step |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return step


class StepIndex:
    """The frames of one run directory's event files, by step.

    Args:
        directory: The run's directory (local or remote, see `storage`).

    Example:

    >>> index = StepIndex("logs/run1")
    >>> for event in index.events(300):
    ...     print(event.step)
    300
    """

    def __init__(self, directory):
        self.directory = directory
        self._lock = threading.Lock()
        self._files = []  # event file paths, by name
        self._ends = {}  # path -> offset after its last complete frame
        self._steps = array.array("q")
        self._file_ids = array.array("l")
        self._offsets = array.array("q")
        self._lengths = array.array("q")

    def update(self):
        """Indexes the frames written since the last call."""
        with self._lock:
            names = sorted(n for n in storage.listdir(self.directory) if "tfevents" in n)
            for name in names:
                path = storage.join(self.directory, name)
                if path not in self._ends:
                    self._files.append(path)
                    self._ends[path] = 0
                self._index_file(self._files.index(path), path)

    def _index_file(self, file_id, path):
        with storage.open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            offset = self._ends[path]
            while offset + records.HEADER_BYTES <= size:
                # The frame's header (length, its checksum) and the first
                # bytes of its event, in one read.
                f.seek(offset)
                head = f.read(records.HEADER_BYTES + _STEP_BYTES)
                length = records.header_length(head)
                if length is None:
                    break  # a damaged header
                end = offset + records.HEADER_BYTES + length + records.FOOTER_BYTES
                if end > size:
                    break  # a frame still being written
                start = records.HEADER_BYTES
                self._steps.append(event_step(head[start:start + min(length, _STEP_BYTES)]))
                self._file_ids.append(file_id)
                self._offsets.append(offset)
                self._lengths.append(length)
                offset = end
            self._ends[path] = offset

    def events(self, step):
        """The intact `Event`s recorded at `step`, in the order written."""
        with self._lock:
            found = [
                (self._files[self._file_ids[i]], self._offsets[i], self._lengths[i])
                for i in _positions(self._steps, step)
            ]
        events = []
        for path, offset, length in found:  # (each checked when read)
            with storage.open(path, "rb") as f:
                event = records.event_at(f, offset, length)
            if event is not None:
                events.append(event)
        return events


def _positions(steps, step):
    """Indices of `step` in the array `steps` (unsorted: a restarted run
    writes steps again)."""
    return np.flatnonzero(np.frombuffer(steps, np.int64) == step).tolist()
