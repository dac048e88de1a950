"""docs/http_api.md, the server and the page agree: every route and parameter
documented is the one `plugin.ROUTES` declares, every response field
documented is one the server sends, and every field the page reads is one of
them."""

import pathlib
import re

import pytest

from gradwatch_tensorboard import metadata
from gradwatch_tensorboard import plugin as plugin_module
from heatmap_format import decode_binary_heatmap
from test_plugin_http import PREFIX, get_json, log_root, make_client  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATIC = ROOT / "tensorboard_plugin" / "static"


def documented():
    """`{route: {"parameters": [...], "fields": [...]}}` from docs/http_api.md."""
    text = (ROOT / "docs" / "http_api.md").read_text()
    routes = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        name = re.match(r"`([^`]+)`", section).group(1)
        tables = {"parameter": [], "field": []}
        kind = None
        for line in section.splitlines():
            head = re.match(r"\| (parameter|field) \|", line)
            if head:
                kind = head.group(1)
            elif line.startswith("| `") and kind:
                tables[kind].append(re.match(r"\| `([^`]+)`", line).group(1))
            elif not line.startswith("|"):
                kind = None
        routes["/" + name] = {"parameters": tables["parameter"], "fields": tables["field"]}
    return routes


# Objects documented as a whole (their keys vary by rule).
OPAQUE = {"findings[].details"}


def field_paths(value, prefix=""):
    """Dotted paths of every field in a JSON value: `runs[].run`, with a dict
    keyed by metric names written `<metric>`."""
    paths = set()
    if isinstance(value, dict):
        keyed_by_metric = value and all(k in metadata.METRIC_NAMES for k in value)
        for key, item in value.items():
            name = prefix + ("<metric>" if keyed_by_metric else key)
            paths.add(name)
            if name not in OPAQUE:
                paths |= field_paths(item, name + ".")
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:
            paths |= field_paths(item, prefix[:-1] + "[].")
    return paths


def test_the_documented_routes_and_parameters_are_the_served_ones():
    docs = documented()
    assert list(docs) == list(plugin_module.ROUTES)
    for route, parameters in plugin_module.ROUTES.items():
        assert docs[route]["parameters"] == list(parameters), route


@pytest.fixture(scope="module")
def client(log_root):  # noqa: F811
    return make_client(log_root)


@pytest.fixture(scope="module")
def served(client):
    """`{route: set of field paths}` the server sends on the gallery."""
    steps = get_json(client, "heatmap", run="relu", metric="activation_var")["steps"]
    binary = client.get(PREFIX + "heatmap", query_string={"run": "relu", "metric": "gradient_var", "format": "binary"})
    header, _ = decode_binary_heatmap(binary.get_data())
    return {
        "/runs": field_paths(get_json(client, "runs")),
        "/heatmap": field_paths(get_json(client, "heatmap", run="relu", metric="activation_var")) | field_paths(header),
        "/profile": field_paths(get_json(client, "profile", run="relu", step=steps[1])),
        "/findings": field_paths(get_json(client, "findings", run="sigmoid")),
        "/distribution": field_paths(get_json(client, "distribution", run="relu", name="unit_activity", layer="dense_0"))
        | field_paths(get_json(client, "distribution", run="relu", name="gradient_histogram", layer="dense_0")),
        "/distribution_step": field_paths(get_json(client, "distribution_step", run="relu", name="activation_histogram")),
    }


@pytest.mark.parametrize("route", ["/runs", "/heatmap", "/profile", "/findings", "/distribution", "/distribution_step"])
def test_the_documented_fields_are_the_ones_the_server_sends(served, route):
    fields = set(documented()[route]["fields"])
    assert served[route] == fields


# Where the page reads each route's response: (file, function, variable, path prefix).
PAGE_READS = [
    ("fetching.js", "decodeRuns", "json", "", "/runs"),
    ("fetching.js", "decodeRuns", "r", "runs[].", "/runs"),
    ("api.js", "decodeBinaryHeatmap", "header", "", "/heatmap"),
    ("api.js", "decodeBinaryHeatmap", "enc", "encoding.", "/heatmap"),
    ("api.js", "heatmapData", "header", "", "/heatmap"),
    ("fetching.js", "sameValues", "answer.header", "", "/heatmap"),
    # The download reads the JSON heatmap.
    ("download.js", "viewTables", "a", "", "/heatmap"),
    ("profile.js", "setData", "json", "", "/profile"),
    ("findings.js", "refresh", "json", "", "/findings"),
    ("findings.js", "decodeFinding", "f", "findings[].", "/findings"),
    ("units.js", "decodeUnits", "json", "", "/distribution"),
    ("distribution.js", "showTime", "json", "", "/distribution"),
    ("distribution.js", "showDepth", "json", "", "/distribution_step"),
]


def function_body(source, name):
    match = re.search(rf"^( *)(?:export )?(?:async )?(?:function )?{name}\([^)]*\) {{$", source, re.M)
    assert match, name
    end = re.compile(rf"^{match.group(1)}}}$", re.M).search(source, match.end())
    return source[match.end() : end.start()]


@pytest.mark.parametrize("file, function, variable, prefix, route", PAGE_READS)
def test_every_field_the_page_reads_is_sent_and_documented(served, file, function, variable, prefix, route):
    body = function_body((STATIC / file).read_text(), function)
    read = set(re.findall(rf"(?<![\w.]){re.escape(variable)}\.([a-z_]+)\b", body))
    read -= {"length", "map"}  # JavaScript's own
    assert read, f"{file}:{function} reads nothing from {variable}"
    paths = {prefix + name for name in read}
    assert paths <= served[route], paths - served[route]
    assert paths <= set(documented()[route]["fields"])


def test_the_page_reads_the_runs_fields_it_needs():
    # The zoom once read `num_steps` and `first_step` from `runs`, which the
    # server never sent; the page now reads only what `runs` documents.
    body = function_body((STATIC / "fetching.js").read_text(), "decodeRuns")
    assert "num_steps" not in body and "first_step" not in body
