"""TFRecord framing, read without TensorFlow: how event files are cut into
records, and their checksums. Shared by `gradwatch.load` and the plugin's
step index.

A frame is a little-endian uint64 length, the masked CRC-32C of those 8
bytes, the payload and its masked CRC-32C. A truncated or damaged frame ends
what is read: a run still being written, or a damaged tail, keeps every
record before it.
"""

import struct

from tensorboard.compat.proto import event_pb2

from . import storage

HEADER_BYTES = 12
FOOTER_BYTES = 4


def _crc32c_table():
    # CRC-32C (Castagnoli), bit-reflected polynomial 0x82F63B78.
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def masked_crc32c(data):
    """The checksum a TFRecord frame stores for `data` (masked CRC-32C).

    Example:

    >>> hex(masked_crc32c(b"123456789"))
    """
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def header_length(header):
    """The payload length a frame's 12-byte `header` gives, or None if the
    header is short or damaged."""
    if len(header) < HEADER_BYTES:
        return None
    length, length_crc = struct.unpack_from("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        return None
    return length


def frame_payload(f, length):
    """Reads a frame's payload and checksum from the open file `f` (just
    past the header): the payload, or None if truncated or damaged."""
    data = f.read(length)
    footer = f.read(FOOTER_BYTES)
    if len(data) < length or len(footer) < FOOTER_BYTES:
        return None
    if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        return None
    return data


def read_records(path):
    """Payloads of the TFRecord file at `path` (local or remote, see
    `storage`), up to the first truncated or damaged frame.

    Example:

    >>> for payload in read_records("logs/run1/events.out.tfevents.1.gradwatch"):
    ...     event = event_pb2.Event.FromString(payload)
    """
    with storage.open(path, "rb") as f:
        while True:
            length = header_length(f.read(HEADER_BYTES))
            data = None if length is None else frame_payload(f, length)
            if data is None:
                return
            yield data


def frame_offsets(f):
    """`(offset, length)` of each frame of an open TFRecord file, reading
    only the headers (the last payload may be truncated)."""
    offset = 0
    while True:
        f.seek(offset)
        length = header_length(f.read(HEADER_BYTES))
        if length is None:
            return
        yield offset, length
        offset += HEADER_BYTES + length + FOOTER_BYTES


def event_at(f, offset, length):
    """The `Event` in the frame at `offset` of the open file `f`, or None if
    it is damaged or not an Event."""
    f.seek(offset + HEADER_BYTES)
    data = frame_payload(f, length)
    if data is None:
        return None
    try:
        return event_pb2.Event.FromString(data)
    except Exception:  # not an Event
        return None
