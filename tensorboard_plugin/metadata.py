"""The GradWatch summary format, shared by the writer, the reader and the plugin.

Every tag GradWatch writes is `gradwatch/<kind>/<name>`:

- `gradwatch/metric/<metric>`: one per metric and recorded step, a float32
  vector with one value per watched layer in depth order (NaN where the
  metric does not apply to a layer);
- `gradwatch/headline/<name>`: a few scalars for TensorBoard's own Scalars
  dashboard;
- `gradwatch/document/<name>`: a JSON document (a string tensor): the init
  audit, where NaN/Inf first appeared, the findings;
- `gradwatch/distribution/<name>`: at the distribution cadence
  (`histogram_freq`), a float32 `[layers, width]` matrix per step: each
  layer's histogram of its output or of dLoss/d(output) in the signed
  log-magnitude bins of `histogram_bins()`, or its units' activity
  (`DISTRIBUTIONS`).

Metric vectors and the findings document carry a `SummaryMetadata` naming
the `gradwatch` plugin with `DATA_CLASS_TENSOR` and a JSON content with the
format version (and, for a vector, the layer names, so that a reader needs
nothing else to label it). Runs written before this scheme (gradwatch 0.1.0:
`gradwatch/<metric>`, `gradwatch_headline/<name>`, `gradwatch_<document>`) are
read as well: `parse_tag` knows both, `tags_for_reading` names both.

This module imports no TensorFlow: TensorBoard loads it at start-up.
"""

import dataclasses
import json

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "gradwatch"
FORMAT_VERSION = 1
# The kinds of tag (`gradwatch/<kind>/<name>`).
METRIC, HEADLINE, DOCUMENT, DISTRIBUTION = "metric", "headline", "document", "distribution"
TAG_PREFIX = PLUGIN_NAME + "/"
# A JSON document written once per `fit` (Text dashboard): the init audit.
INIT_AUDIT_TAG = f"{TAG_PREFIX}{DOCUMENT}/init_audit"
# A JSON document written once (Text dashboard): where NaN/Inf first appeared.
FIRST_NONFINITE_TAG = f"{TAG_PREFIX}{DOCUMENT}/first_nonfinite"
# A JSON document, rewritten as findings appear and when `fit` ends: the
# findings (`findings_document`). Written under this plugin's name with its
# own content (`create_document_metadata`), so the plugin reads it through the
# data provider.
FINDINGS_TAG = f"{TAG_PREFIX}{DOCUMENT}/findings"
FINDINGS_VERSION = 1
# The documents' tags in gradwatch 0.1.0, read still.
_LEGACY_DOCUMENT_PREFIX = PLUGIN_NAME + "_"
_LEGACY_HEADLINE_PREFIX = "gradwatch_headline/"
# Keep every recorded step up to this many per series in TensorBoard (it
# reservoir-samples beyond). The plugin's loader sets it as the default.
SAMPLES_PER_SERIES = 20_000


class MetricInfo:
    """What one metric means and how to colour it.

    Args:
        name: Tag suffix and key used by `gradwatch.load().metric(name)`.
        label: Short human label.
        scale: How the plugin colours it: `"log"` (positive, log10),
            `"ratio"` (positive, healthy at 1, diverging on log10), `"signed"`
            (diverging around 0), `"fraction"` (0..1) or `"count"` (0..max).
        description: The exact definition, as documented in the README.
    """

    def __init__(self, name, label, scale, description):
        self.name = name
        self.label = label
        self.scale = scale
        self.description = description

    def to_json(self):
        return {
            "label": self.label,
            "scale": self.scale,
            "description": self.description,
        }


_METRIC_LIST = [
    MetricInfo(
        "activation_mean", "Activation mean", "signed",
        "Mean of the layer's output over every element of the batch "
        "(finite values only).",
    ),
    MetricInfo(
        "activation_var", "Activation variance", "log",
        "Population variance of the layer's output over every element of "
        "the batch (finite values only): forward variance propagation.",
    ),
    MetricInfo(
        "activation_gain", "Forward gain", "ratio",
        "activation_var divided by the variance of the layer's input; 1 "
        "preserves variance.",
    ),
    MetricInfo(
        "gradient_var", "Gradient variance", "log",
        "Population variance of dLoss/d(layer output) over the batch: "
        "backward variance propagation (Glorot & Bengio, 2010).",
    ),
    MetricInfo(
        "gradient_norm", "Kernel gradient norm", "log",
        "L2 norm of the gradient of the layer's kernels (trainable weights "
        "with 2 or more dimensions), as handed to the optimizer.",
    ),
    MetricInfo(
        "update_ratio", "Update ratio", "log",
        "||W_after - W_before|| / ||W_before|| over the layer's kernels for "
        "that step's optimizer update.",
    ),
    MetricInfo(
        "distance_from_init", "Distance from init", "log",
        "||W - W_0|| / ||W_0|| over the layer's kernels after that step's "
        "update, where W_0 is the kernels' value when a GradWatch first "
        "watched the model (its initialisation, for a fresh model); NaN for "
        "a kernel that starts at zero.",
    ),
    MetricInfo(
        "saturation_fraction", "Saturation", "fraction",
        "Share of output elements where the layer's nonlinearity has a "
        "derivative below `saturation_threshold` (default 0.05) times its "
        "maximum; NaN for layers without a saturating nonlinearity.",
    ),
    MetricInfo(
        "dead_units", "Dead units", "count",
        "Units (last axis) whose output sits at the activation's floor (0 for "
        "ReLU) for every example and position of the batch; NaN for "
        "activations without a floor.",
    ),
    MetricInfo(
        "dead_fraction", "Dead fraction", "fraction",
        "dead_units divided by the number of units.",
    ),
    MetricInfo(
        "dead_units_window", "Dead units (epoch)", "count",
        "Units dead on every recorded batch since the current epoch began: "
        "dead rather than dormant.",
    ),
    MetricInfo(
        "bn_batch_mean", "BN batch mean", "signed",
        "BatchNormalization layers: per-channel mean of the layer's input "
        "over the batch, averaged over channels.",
    ),
    MetricInfo(
        "bn_batch_var", "BN batch variance", "log",
        "BatchNormalization layers: per-channel variance of the layer's input "
        "over the batch, averaged over channels.",
    ),
    MetricInfo(
        "bn_moving_mean", "BN moving mean", "signed",
        "BatchNormalization layers: moving mean after the step's update, "
        "averaged over channels.",
    ),
    MetricInfo(
        "bn_moving_var", "BN moving variance", "log",
        "BatchNormalization layers: moving variance after the step's update, "
        "averaged over channels.",
    ),
    MetricInfo(
        "bn_gamma", "BN gamma", "signed",
        "BatchNormalization layers: scale gamma, averaged over channels.",
    ),
    MetricInfo(
        "bn_beta", "BN beta", "signed",
        "BatchNormalization layers: offset beta, averaged over channels.",
    ),
    MetricInfo(
        "bn_skew", "BN train/inference skew", "log",
        "BatchNormalization layers: |batch_mean - moving_mean| / "
        "sqrt(moving_var + epsilon) per channel, with the moving statistics "
        "the step started from, averaged over channels.",
    ),
    MetricInfo(
        "activation_nonfinite", "Non-finite activations", "count",
        "Number of NaN or Inf elements in the layer's output.",
    ),
    MetricInfo(
        "gradient_nonfinite", "Non-finite gradients", "count",
        "Number of NaN or Inf elements in dLoss/d(layer output).",
    ),
]

METRICS = {m.name: m for m in _METRIC_LIST}
# The one list of metric names, in the order the tab's menu shows them: the
# callback records these, the README's table and the page (through the
# plugin's `runs` route) follow it.
METRIC_NAMES = tuple(METRICS)
# What the tab shows first.
DEFAULT_METRIC = "activation_var"


# Distributions: signed log-magnitude bins. Magnitudes by decades from
# 10**HISTOGRAM_DECADES[0] to 10**HISTOGRAM_DECADES[1]; a smaller non-zero
# magnitude counts in the first decade, a larger one in the last.
HISTOGRAM_DECADES = (-8, 4)
# Per-unit views show a layer's first UNITS_SHOWN units (last axis).
UNITS_SHOWN = 256


def histogram_bins():
    """The bins of a GradWatch histogram, in order: the negative decades
    (largest magnitude first), exact zero, the positive decades, then NaN
    and Inf. Each is `{"label", "sign", "low", "high"}` (`low`/`high`: the
    magnitude's decade, None for zero and non-finite).

    Example:

    >>> [b["label"] for b in histogram_bins()][11:14]
    ['-1e-8', '0', '+1e-8']
    """
    low, high = HISTOGRAM_DECADES
    decades = list(range(low, high))
    negative = [
        {"label": f"-1e{d}", "sign": -1, "low": d, "high": d + 1} for d in reversed(decades)
    ]
    positive = [{"label": f"+1e{d}", "sign": 1, "low": d, "high": d + 1} for d in decades]
    zero = {"label": "0", "sign": 0, "low": None, "high": None}
    nonfinite = {"label": "NaN/Inf", "sign": None, "low": None, "high": None}
    return negative + [zero] + positive + [nonfinite]


HISTOGRAM_WIDTH = 2 * (HISTOGRAM_DECADES[1] - HISTOGRAM_DECADES[0]) + 2


@dataclasses.dataclass(frozen=True)
class DistributionInfo:
    """One distribution series: what each row of its matrix holds.

    Attributes:
        name: Tag suffix and key of `gradwatch.load().distribution(name)`.
        label: Short human label.
        columns: `"bins"` (`histogram_bins()`) or `"units"` (the first
            `UNITS_SHOWN` units).
        description: The exact definition, as documented in the README.
    """

    name: str
    label: str
    columns: str
    description: str

    @property
    def width(self):
        return HISTOGRAM_WIDTH if self.columns == "bins" else UNITS_SHOWN

    def to_json(self):
        return {"label": self.label, "columns": self.columns, "description": self.description}


DISTRIBUTIONS = {
    d.name: d
    for d in [
        DistributionInfo(
            "activation_histogram", "Output distribution", "bins",
            "Count of the layer's output elements in each signed "
            "log-magnitude bin (histogram_bins()).",
        ),
        DistributionInfo(
            "gradient_histogram", "Gradient distribution", "bins",
            "Count of the elements of dLoss/d(layer output) in each signed "
            "log-magnitude bin.",
        ),
        DistributionInfo(
            "unit_activity", "Unit activity", "units",
            "Per unit (last axis, the first UNITS_SHOWN): share of the "
            "batch's finite output elements above the activation's floor; "
            "0 is a unit dead on that batch. NaN for activations without a "
            "floor and beyond the layer's units.",
        ),
        DistributionInfo(
            "unit_saturation", "Unit saturation", "units",
            "Per unit (the first UNITS_SHOWN): share of the batch's finite "
            "output elements in the nonlinearity's flat region (as "
            "saturation_fraction). NaN without a saturating nonlinearity.",
        ),
    ]
}
DISTRIBUTION_NAMES = tuple(DISTRIBUTIONS)


def metric_order(name):
    """Sort key putting metric names in `METRIC_NAMES` order (others last,
    by name)."""
    return (METRIC_NAMES.index(name) if name in METRIC_NAMES else len(METRIC_NAMES), name)


def tag(kind, name):
    """The tag GradWatch writes `name` of `kind` (`METRIC`, `HEADLINE` or
    `DOCUMENT`) under: `gradwatch/<kind>/<name>`."""
    return f"{TAG_PREFIX}{kind}/{name}"


def metric_tag(metric):
    """The summary tag under which `metric` is written."""
    return tag(METRIC, metric)


def parse_tag(tag_name):
    """`(kind, name)` of a GradWatch tag, new scheme or 0.1.0's; None for
    any other tag.

    Example:

    >>> parse_tag("gradwatch/metric/gradient_var"), parse_tag("gradwatch/gradient_var")
    (('metric', 'gradient_var'), ('metric', 'gradient_var'))
    """
    if tag_name.startswith(TAG_PREFIX):
        rest = tag_name[len(TAG_PREFIX):]
        kind, slash, name = rest.partition("/")
        if not slash:
            return (METRIC, rest) if rest else None  # 0.1.0: gradwatch/<metric>
        known = (METRIC, HEADLINE, DOCUMENT, DISTRIBUTION)
        return (kind, name) if kind in known and name else None
    if tag_name.startswith(_LEGACY_HEADLINE_PREFIX):
        name = tag_name[len(_LEGACY_HEADLINE_PREFIX):]
        return (HEADLINE, name) if name else None
    if tag_name.startswith(_LEGACY_DOCUMENT_PREFIX) and "/" not in tag_name:
        return (DOCUMENT, tag_name[len(_LEGACY_DOCUMENT_PREFIX):])
    return None


def tags_for_reading(tag_name):
    """`tag_name` (a tag this version writes) and the tag gradwatch 0.1.0
    wrote the same series under: read both, the second's records first.

    Example:

    >>> tags_for_reading(FINDINGS_TAG)
    ('gradwatch_findings', 'gradwatch/document/findings')
    """
    kind, name = parse_tag(tag_name)
    legacy = {
        METRIC: TAG_PREFIX + name,
        HEADLINE: _LEGACY_HEADLINE_PREFIX + name,
        DOCUMENT: _LEGACY_DOCUMENT_PREFIX + name,
    }[kind]
    return (legacy, tag(kind, name))


def metric_from_tag(tag_name):
    """The metric name of a GradWatch metric tag (either scheme), or None
    for any other tag."""
    parsed = parse_tag(tag_name)
    return parsed[1] if parsed and parsed[0] == METRIC else None


def create_summary_metadata(layers, width=None):
    """A `SummaryMetadata` proto for a per-layer metric vector, or for a
    `[layers, width]` distribution matrix.

    Args:
        layers: Watched layer names, in depth order.
        width: A distribution's row width, or None for a metric.

    Returns:
        A `summary_pb2.SummaryMetadata` naming the plugin, with
        `DATA_CLASS_TENSOR` and JSON content `{"version", "layers"}` (and
        `"width"` for a distribution).
    """
    fields = {"layers": list(layers)}
    if width is not None:
        fields["width"] = int(width)
    return _tensor_metadata(fields)


def create_document_metadata(kind):
    """A `SummaryMetadata` for a JSON document served by this plugin.

    Args:
        kind: What the document is, e.g. `"findings"`.

    Returns:
        A `summary_pb2.SummaryMetadata` naming the plugin, with
        `DATA_CLASS_TENSOR` and JSON content `{"version", "document"}`.
    """
    return _tensor_metadata({"document": kind})


def _tensor_metadata(fields):
    # DATA_CLASS_TENSOR: without it TensorBoard silently drops the series.
    content = json.dumps({"version": FORMAT_VERSION, **fields})
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.encode("utf-8")
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_content(content):
    """Decodes the JSON content written by `create_summary_metadata`.

    Args:
        content: The `plugin_data.content` bytes.

    Returns:
        A dict with `version` (int), `layers` (list of str) and `width`
        (int; 1 for a metric vector).

    Raises:
        ValueError: if the content is not a GradWatch metadata document of a
            version this code can read.
    """
    try:
        document = json.loads(bytes(content).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"GradWatch metadata is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise ValueError("GradWatch metadata is not a JSON object.")
    version = document.get("version")
    layers = document.get("layers")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"Unsupported GradWatch format version {version!r}; this "
            f"gradwatch reads versions up to {FORMAT_VERSION}."
        )
    if not isinstance(layers, list) or not all(
        isinstance(name, str) for name in layers
    ):
        raise ValueError("GradWatch metadata has no list of layer names.")
    width = document.get("width", 1)
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"GradWatch metadata has a bad width {width!r}.")
    return {"version": version, "layers": layers, "width": width}
