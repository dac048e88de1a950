"""What a `heatmap` response holds and how it is written: the recorded steps
of a range merged into columns (`downsample`), as JSON (`to_json`) or as
packed codes with their scale (`binary_heatmap`; docs/http_api.md)."""

import json

import numpy as np
from tensorboard.backend import json_util

from . import metadata


def render_heatmap(run, metric, series, start_step, end_step, max_columns, encoding):
    """The `heatmap` response body (bytes for binary, str for JSON): the
    series' recorded steps in [start_step, end_step] in at most
    `max_columns` columns."""
    scale = metadata.METRICS[metric].scale if metric in metadata.METRICS else "signed"
    lo = np.searchsorted(series.steps, start_step, side="left")
    hi = np.searchsorted(series.steps, end_step, side="right")
    if 0 < lo < len(series.steps) and series.steps[lo] > start_step:
        # `start_step` falls between two recorded steps: the earlier one's
        # column reaches over it (a column lasts until the next recorded
        # step), so it is part of the view; without it a zoomed page would
        # show no data at its left edge.
        lo -= 1
    steps, ranges, values = downsample(
        series.steps[lo:hi], series.values[lo:hi], max_columns, scale
    )
    header = {
        "run": run,
        "metric": metric,
        "layers": series.layers,
        "total_steps": int(len(series.steps)),
        "first_step": int(series.steps[0]) if len(series.steps) else None,
        "last_step": int(series.steps[-1]) if len(series.steps) else None,
        "range_steps": int(hi - lo),
        "step_ranges": ranges,
    }
    if encoding == "binary":
        return binary_heatmap(header, values, scale)
    return to_json(dict(header, steps=steps, values=values))


# Codes of the binary heatmap (`quantise`): CODE_BITS bits each, packed.
# 14 bits keep 500 layers x 1,000 columns under 1,000,000 bytes (875,000
# of codes) with 16,380 levels: a log10 span of 14 decades in steps of
# 0.00086 (0.2%), and counts exactly up to 16,379.
CODE_BITS = 14
CODE_LEVELS = 2**CODE_BITS - 4
CODE_ZERO = CODE_LEVELS  # exactly 0 on a log10 encoding
CODE_NEG_INF = CODE_LEVELS + 1
CODE_POS_INF = CODE_LEVELS + 2
CODE_NAN = CODE_LEVELS + 3


def quantise(values, scale):
    """Encodes float values as `CODE_BITS`-bit codes with their scale.

    Metrics coloured on a log scale (`"log"`, `"ratio"`) whose finite values
    are all >= 0 are encoded on log10 (0 gets `CODE_ZERO`); the rest
    linearly, from a whole number of steps below 0, so that 0 stays 0, and
    only 0 decodes to 0. Integers spanning fewer than `CODE_LEVELS` values
    (counts) are encoded exactly. NaN, +Inf and -Inf get codes of their own.

    Args:
        values: Float array of any shape.
        scale: The metric's colour scale (`metadata.MetricInfo.scale`).

    Returns:
        `(codes, encoding)`: a uint16 array of `values`' shape, and
        `{"transform": "log10" | "linear", "offset", "step"}`: a code `c`
        below `CODE_LEVELS` stands for `offset + c * step`, raised to the power
        of 10 for `"log10"`. Each value is within `step / 2` of its code's in
        that (transformed) space; a linear one within `step / 2` of 0, within
        `step` (on its side of 0).

    Example:

    >>> codes, enc = quantise(np.array([1.0, 100.0, np.nan]), "log")
    >>> codes.tolist(), enc["transform"]
    ([0, 16378, 16383], 'log10')
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.full(values.shape, CODE_NAN, dtype=np.uint16)
    codes[values == np.inf] = CODE_POS_INF
    codes[values == -np.inf] = CODE_NEG_INF
    finite = np.isfinite(values)
    shown = values[finite]
    transform = "linear"
    if scale in ("log", "ratio") and shown.size and shown.min() >= 0:
        transform = "log10"
        codes[finite & (values == 0)] = CODE_ZERO
        finite &= values > 0
        shown = np.log10(values[finite])
    if not shown.size:
        return codes, {"transform": transform, "offset": 0.0, "step": 1.0}
    low, span = float(shown.min()), float(shown.max() - shown.min())
    if transform == "linear" and span < CODE_LEVELS and np.all(shown == np.rint(shown)):
        step = 1.0  # counts, exactly
    else:
        step = span / (CODE_LEVELS - 2) or 1.0
    # A whole number of steps below 0, so that a linear 0 decodes to 0.
    offset = float(np.floor(low / step) * step)
    steps = np.rint((shown - offset) / step)
    if transform == "linear":
        # Only an exact 0 decodes to 0: a value nearer 0 than step / 2 moves
        # one step away from it, keeping its sign.
        zero = np.rint(-offset / step)
        steps += (steps == zero) * np.sign(shown)
    codes[finite] = np.clip(steps, 0, CODE_LEVELS - 1)
    return codes, {"transform": transform, "offset": offset, "step": step}


def pack_codes(codes, bits=CODE_BITS):
    """Packs codes below `2**bits` into a little-endian bit stream.

    Code `i` occupies bits `i * bits` to `(i + 1) * bits - 1` of the stream,
    its least significant bit first; the last byte is padded with zeros.

    Args:
        codes: Unsigned integer array of any shape (read in C order).
        bits: Bits per code, 1 to 16.

    Returns:
        `bytes` of length `ceil(codes.size * bits / 8)`.

    Example:

    >>> pack_codes(np.array([1, 2]), bits=4)
    b'!'
    """
    flat = np.asarray(codes, dtype="<u2").reshape(-1, 1)
    stream = np.unpackbits(flat.view(np.uint8), axis=1, bitorder="little")
    return np.packbits(stream[:, :bits], bitorder="little").tobytes()


def binary_heatmap(header, values, scale):
    """The heatmap as `application/octet-stream` bytes: a little-endian
    uint32 header length, the JSON header (padded with spaces to a multiple
    of 4 bytes), then the `CODE_BITS`-bit codes of `values`, column by
    column, packed (`pack_codes`; see docs/http_api.md)."""
    codes, encoding = quantise(values, scale)
    encoding.update(
        bits=CODE_BITS, zero=CODE_ZERO, neg_inf=CODE_NEG_INF,
        pos_inf=CODE_POS_INF, nan=CODE_NAN,
    )
    text = to_json(dict(header, columns=int(codes.shape[0]), encoding=encoding))
    head = text.encode("utf-8")
    head += b" " * (-(4 + len(head)) % 4)
    return b"".join([np.uint32(len(head)).astype("<u4").tobytes(), head, pack_codes(codes)])


def to_json(value):
    """JSON text of a response body, with float arrays written fast.

    TensorBoard's `Respond` would walk every float of a 1000 x 200 heatmap in
    Python to spell NaN and Infinity as strings; here numpy writes each
    float array at once, in the shortest text that round-trips its float32
    value (what the callback recorded), with the same "NaN", "Infinity" and
    "-Infinity" strings.

    Args:
        value: Dicts, lists, strings, numbers and numpy arrays.

    Returns:
        A `str`.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return json.dumps(value.tolist())
        return _float_array_json(value.astype(np.float32, copy=False))
    if isinstance(value, dict):
        return "{" + ",".join(
            f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()
        ) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(json_util.Cleanse(value))


def _float_array_json(array):
    # A float32's shortest text has at most 15 characters ("-1.17549435e-38").
    text = array.astype("<U15")
    text[np.isnan(array)] = '"NaN"'
    text[np.isposinf(array)] = '"Infinity"'
    text[np.isneginf(array)] = '"-Infinity"'
    return _nested(text)


def _nested(text):
    if text.ndim == 0:
        return str(text)
    if text.ndim == 1:
        return "[" + ",".join(text.tolist()) + "]"
    return "[" + ",".join(_nested(row) for row in text) + "]"


def downsample(steps, values, max_columns, scale):
    """Merges consecutive recorded steps into at most `max_columns` columns.

    Args:
        steps: Sorted int array of recorded steps, length T.
        values: Float array [T, layers].
        max_columns: The most columns to return.
        scale: The metric's colour scale (see `metadata.MetricInfo`):
            "fraction" and "count" keep each column's max (the worst value);
            other metrics keep the real value at the column's last step.

    Returns:
        `(steps, step_ranges, values)`: each column's last step, its
        `[first, last]` steps, and its values [columns, layers].
    """
    total = len(steps)
    if total <= max_columns:
        ranges = np.stack([steps, steps], axis=1) if total else np.zeros((0, 2), np.int64)
        return steps, ranges, values
    edges = np.linspace(0, total, max_columns + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if scale in ("fraction", "count"):
        # fmax ignores NaN unless every value of the column is NaN.
        reduced = np.fmax.reduceat(values, starts, axis=0)
    else:
        reduced = values[ends - 1]
    ranges = np.stack([steps[starts], steps[ends - 1]], axis=1)
    return steps[ends - 1], ranges, reduced

