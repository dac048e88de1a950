"""The binary heatmap format (docs/http_api.md), decoded here on its own
rather than with the plugin's code, for the tests."""

import json

import numpy as np


def decode_binary_heatmap(data):
    """The binary format as docs/http_api.md describes it, decoded here on
    its own (not with the plugin's code): `(header, values [columns, layers])`."""
    (length,) = np.frombuffer(data[:4], "<u4")
    assert (4 + length) % 4 == 0
    header = json.loads(data[4 : 4 + length].decode("utf-8"))
    enc = header["encoding"]
    cells = header["columns"] * len(header["layers"])
    bits = enc["bits"]
    assert len(data) == 4 + length + (cells * bits + 7) // 8
    # Code i is bits i*bits .. (i+1)*bits-1 of the stream, least significant first.
    stream = np.unpackbits(np.frombuffer(data[4 + length :], np.uint8), bitorder="little")
    weights = 2 ** np.arange(bits, dtype=np.int64)
    codes = stream[: cells * bits].reshape(cells, bits).astype(np.int64) @ weights
    real = enc["offset"] + codes * enc["step"]
    if enc["transform"] == "log10":
        real = 10.0**real
    real[codes == enc["nan"]] = np.nan
    real[codes == enc["pos_inf"]] = np.inf
    real[codes == enc["neg_inf"]] = -np.inf
    if enc["transform"] == "log10":
        real[codes == enc["zero"]] = 0.0
    return header, real.reshape(header["columns"], len(header["layers"]))
