"""Findings: the recorded numbers turned into named problems with remedies.

`evaluate(recording)` applies a fixed set of rules to a GradWatch recording and
returns `Finding`s: a stable rule id, a severity, the layers and steps
concerned, a one-line message and a remedy from the field's practice. The
rules read only what any *recording-like* object offers:

- `layers`: watched layer names in depth order;
- `steps`: 1-D int array of recorded steps;
- `metrics` and `metric(name)` -> float array `[steps, layers]`;
- optionally `init_audit` (list of dicts) and `first_nonfinite`.

`gradwatch.load(...)` returns one (`Recording.findings()` calls `evaluate`),
and so does `RecentWindow`, the bounded window of recent rows the callback
keeps while training; `FindingTracker` folds the window's findings into a
history over the whole `fit`. One set of rules serves the callback, the
reader, the CLI (`python -m gradwatch report`) and, through the document the
callback writes, the TensorBoard plugin.

Severity: `"warning"` for a problem seen in the training data that hurts
training (a CI job can fail on it with `report --strict`); `"info"` for a
cause worth knowing or a problem that is being contained (a moderately
mismatched init, exploding gradients whose updates stay bounded, BatchNorm
moving statistics still converging).

Only numpy is needed: this module imports no TensorFlow.
"""

import collections
import dataclasses
import math

import numpy as np

WARNING = "warning"
INFO = "info"
SEVERITIES = (WARNING, INFO)

# Rule ids, in the order findings are listed (within a severity).
RULES = (
    "nonfinite",
    "exploding_gradients",
    "vanishing_gradients",
    "saturation",
    "dying_units",
    "not_self_normalizing",
    "bn_skew",
    "init_mismatch",
)

# name, the variances it accepts (see `init_audit.accepted_variances`), Keras initializer.
_SCHEMES = {
    "glorot": ("Glorot", "1/fan_in to 1/fan_out", "glorot_uniform"),
    "he": ("He", "2/fan_in to 2/fan_out", "he_normal"),
    "lecun": ("LeCun", "1/fan_in", "lecun_normal"),
}
# Output nonlinearities whose gradient, paired with a cross-entropy loss, is
# p - y at the logits: it does not vanish where they saturate.
_LOSS_PAIRED = ("sigmoid", "softmax")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a rule fires. Every field has a documented default.

    Attributes:
        min_records: Rules that need persistence (`vanishing_gradients`,
            `exploding_gradients` growth, `saturation`, `dying_units`,
            `not_self_normalizing`, `bn_skew`) fire only when their condition
            holds on at least this many *consecutive recorded* steps, not on
            one batch.
        vanishing_ratio: `vanishing_gradients` when the backward variance
            (`gradient_var`) of the first layer of the network's main chain
            of like layers is at most this fraction of the last one's
            (default 1e-3: three orders of magnitude).
        exploding_ratio: `exploding_gradients` when it is at least this
            multiple (default 1e3).
        spike_factor: `exploding_gradients` also when a layer's kernel
            gradient norm jumps to this multiple of its median over the
            preceding recorded steps, and what an explosion shows besides
            comes with it: the jump lasts two records, or another layer
            jumps at the same step, or that layer's update ratio reaches
            `update_ratio_max`, or NaN/Inf follows within `min_records`
            records. A lone one-step jump is what an adaptive optimizer
            normalises away.
        spike_history: How many preceding recorded steps that median uses
            (at least `min_records` of them must be there).
        update_ratio_max: Exploding gradients whose largest update ratio
            (`update_ratio`) stays below this, with no spike and no NaN/Inf
            after them, are contained (clipping, an adaptive optimizer) and
            reported as `info`, otherwise as `warning`.
        update_ratio_diverged: `exploding_gradients` (a warning) also when,
            at one recorded step, at least half of the layers with kernels
            have an update ratio of at least this: their weights were
            replaced by their updates.
        saturation_fraction: `saturation` when at least this share of a
            layer's outputs sit in the flat region of its nonlinearity.
        dead_fraction: `dying_units` when at least this share of a layer's
            units are dead on every recorded batch since the epoch began
            (`dead_units_window`)...
        dead_fraction_batch: ... or at least this share is dead on each
            recorded batch (`dead_fraction`), on `min_records` consecutive
            ones.
        init_ratio: `init_mismatch` when a kernel's variance is more than
            this factor above or below what its activation's scheme gives
            (Glorot, He or LeCun; 1.5 flags ReLU with Glorot init, whose
            variance is half of He's).
        init_warning_ratio: An `init_mismatch` beyond this factor is a
            `warning` (a hand-set N(0, 1) is 50-100x off); closer ones are
            `info`, since what they do shows in the other rules.
        selu_mean_max: `not_self_normalizing` when a SELU layer's output
            mean leaves [-selu_mean_max, selu_mean_max]...
        selu_var_factor: ... or its output variance leaves
            [1/selu_var_factor, selu_var_factor].
        input_var_factor: Input variance outside [1/f, f] names "inputs not
            standardised" as a cause of `not_self_normalizing`.
        bn_skew_max: `bn_skew` when a BatchNormalization layer's `bn_skew`
            (the gap between batch and moving mean, in moving standard
            deviations) is at least this...
        bn_var_ratio_max: ... or batch and moving variance differ by at
            least this factor.
        bn_converging_drop: A BatchNorm gap (in the statistics' own units)
            that fell on 3 of 4 consecutive records and by at least this
            share over its span is the moving averages still catching up
            (warm-up, momentum): `info`. A gap that does not shrink (noisy
            or shifting batches) is a `warning`. A gap seen on fewer than
            `2 * min_records` records is too young to tell, and `info`.
            Gaps in a layer's first 1/(1 - momentum) optimizer steps (its
            moving averages' horizon; 100 steps at Keras' default 0.99,
            read from the init audit) are expected and not reported...
        bn_growth_factor: ... unless the gap (the larger of the two scores
            above) grows by this factor over `2 * min_records` records or
            more: a `warning`.
    """

    min_records: int = 3
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    spike_factor: float = 100.0
    spike_history: int = 10
    update_ratio_max: float = 0.1
    update_ratio_diverged: float = 1.0
    saturation_fraction: float = 0.5
    dead_fraction: float = 0.3
    dead_fraction_batch: float = 0.5
    init_ratio: float = 1.5
    init_warning_ratio: float = 10.0
    selu_mean_max: float = 0.5
    selu_var_factor: float = 3.0
    input_var_factor: float = 2.0
    bn_skew_max: float = 1.0
    bn_var_ratio_max: float = 4.0
    bn_converging_drop: float = 0.05
    bn_growth_factor: float = 2.0

    def __post_init__(self):
        if (
            isinstance(self.min_records, bool)
            or not isinstance(self.min_records, int)
            or self.min_records < 1
        ):
            raise ValueError(
                f"Thresholds.min_records must be an int >= 1, got {self.min_records!r}"
            )
        if isinstance(self.spike_history, bool) or not isinstance(
            self.spike_history, int
        ) or self.spike_history < 1:
            raise ValueError(
                f"Thresholds.spike_history must be an int >= 1, got {self.spike_history!r}"
            )
        for name in ("vanishing_ratio", "saturation_fraction", "dead_fraction",
                     "dead_fraction_batch", "bn_converging_drop"):
            value = getattr(self, name)
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"Thresholds.{name} must be in (0, 1], got {value!r}")
        for name in ("exploding_ratio", "spike_factor", "init_ratio",
                     "init_warning_ratio", "selu_var_factor", "input_var_factor",
                     "bn_var_ratio_max", "bn_growth_factor"):
            value = getattr(self, name)
            if not float(value) > 1.0:
                raise ValueError(f"Thresholds.{name} must be > 1, got {value!r}")
        for name in ("update_ratio_max", "update_ratio_diverged", "selu_mean_max", "bn_skew_max"):
            value = getattr(self, name)
            if not float(value) > 0.0:
                raise ValueError(f"Thresholds.{name} must be > 0, got {value!r}")

    def to_json(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Finding:
    """One named problem.

    Attributes:
        rule: Stable rule id, one of `RULES`.
        severity: `"warning"` or `"info"`.
        layers: The layers concerned, in depth order.
        first_step: First recorded step where the problem showed.
        last_step: Last recorded step where it showed.
        message: One line: layers, what, since when.
        remedy: What the field's practice suggests.
        metric: The metric that shows it (the plugin selects it).
        ongoing: Whether it still held at the last recorded step.
        summary: The message's middle part (what, without layers or steps).
        group: Distinguishes findings of one rule (`init_mismatch` groups by
            activation and scheme); "" otherwise.
        details: Numbers behind the message (JSON-serialisable).
    """

    rule: str
    severity: str
    layers: list
    first_step: int
    last_step: int
    message: str
    remedy: str
    metric: str
    ongoing: bool = True
    summary: str = ""
    group: str = ""
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self):
        """Identifies a finding across evaluations: `(rule, group)`."""
        return (self.rule, self.group)

    def to_json(self):
        """A plain dict (JSON-serialisable; no NaN)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "layers": list(self.layers),
            "first_step": int(self.first_step),
            "last_step": int(self.last_step),
            "message": self.message,
            "remedy": self.remedy,
            "metric": self.metric,
            "ongoing": bool(self.ongoing),
            "summary": self.summary,
            "group": self.group,
            "details": _json_safe(self.details),
        }

    @classmethod
    def from_json(cls, document):
        """The inverse of `to_json` (unknown keys are ignored)."""
        return cls(
            rule=str(document["rule"]),
            severity=str(document["severity"]),
            layers=[str(n) for n in document.get("layers", [])],
            first_step=int(document["first_step"]),
            last_step=int(document["last_step"]),
            message=str(document.get("message", "")),
            remedy=str(document.get("remedy", "")),
            metric=str(document.get("metric", "")),
            ongoing=bool(document.get("ongoing", False)),
            summary=str(document.get("summary", "")),
            group=str(document.get("group", "")),
            details=dict(document.get("details") or {}),
        )

    def __str__(self):
        return f"[{self.severity}] {self.rule}: {self.message}"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# -- evaluation -----------------------------------------------------------------


def evaluate(recording, thresholds=None):
    """Applies every rule to a recording.

    Args:
        recording: A `gradwatch.Recording` or any recording-like object (see
            the module docstring), e.g. the callback's `RecentWindow`.
        thresholds: A `Thresholds`; defaults to `Thresholds()`.

    Returns:
        A list of `Finding`, warnings first, then in `RULES` order.
    """
    if thresholds is None:
        thresholds = Thresholds()
    if not isinstance(thresholds, Thresholds):
        raise TypeError(
            f"thresholds must be a gradwatch.findings.Thresholds, got {type(thresholds).__name__}"
        )
    view = _View(recording)
    found = []
    if len(view.steps) == 0 or not view.layers:
        return found
    for rule in (
        _nonfinite,
        _gradient_flow,
        _saturation,
        _dying_units,
        _not_self_normalizing,
        _bn_skew,
        _init_mismatch,
    ):
        found.extend(rule(view, thresholds))
    _relate(found, view)
    return sort_findings(found)


def _relate(found, view):
    """Notes where one finding explains another."""
    by_rule = {f.rule: f for f in found}
    vanishing, dying = by_rule.get("vanishing_gradients"), by_rule.get("dying_units")
    if vanishing and dying and (
        dying.first_step <= vanishing.last_step and vanishing.first_step <= dying.last_step
    ):
        vanishing.details["note"] = "dead units block the gradient (see dying_units)"
        vanishing.message = render_message(vanishing, view.layers)


def sort_findings(findings):
    """Warnings first, then by rule (in `RULES` order), then by first step."""

    def order(f):
        rule = RULES.index(f.rule) if f.rule in RULES else len(RULES)
        return (f.severity != WARNING, rule, f.first_step, f.group)

    return sorted(findings, key=order)


class _View:
    """What the rules read from a recording, computed once."""

    def __init__(self, recording):
        self.layers = [str(n) for n in recording.layers]
        self.index = {n: i for i, n in enumerate(self.layers)}
        self.steps = np.asarray(recording.steps, dtype=np.int64).reshape(-1)
        self._recording = recording
        self._cache = {}
        self.audit = list(getattr(recording, "init_audit", None) or [])
        # The step the audit describes: the first recorded one unless told.
        audit_step = getattr(recording, "init_audit_step", None)
        self.audit_step = int(audit_step) if audit_step is not None else (
            int(self.steps[0]) if len(self.steps) else 0
        )
        self.first_nonfinite = getattr(recording, "first_nonfinite", None)
        present = getattr(recording, "metrics", None)
        self._present = set(present) if present is not None else None

    def get(self, name):
        """`[steps, layers]` float array, all NaN where absent."""
        if name not in self._cache:
            values = None
            if self._present is None or name in self._present:
                try:
                    values = np.asarray(self._recording.metric(name), np.float64)
                except KeyError:
                    values = None
            shape = (len(self.steps), len(self.layers))
            if values is None or values.shape != shape:
                values = np.full(shape, np.nan)
            self._cache[name] = values
        return self._cache[name]

    def applies(self, name):
        """Per layer: whether `name` was ever recorded finite for it."""
        key = ("applies", name)
        if key not in self._cache:
            self._cache[key] = np.isfinite(self.get(name)).any(axis=0)
        return self._cache[key]

    def step(self, row):
        return int(self.steps[row])

    def loss_heads(self):
        """Indices of layers whose outputs feed a cross-entropy loss through
        a sigmoid or softmax (from the init audit)."""
        return sorted({
            self.index[e["loss_head"]] for e in self.audit
            if isinstance(e, dict) and e.get("loss_head") in self.index
            and e.get("activation") in _LOSS_PAIRED
        })

    def batch_norm_horizon(self):
        """Per layer: the optimizer steps its BatchNorm moving averages need
        to forget their start, 1/(1 - momentum); 0 where unknown or where
        they never move (momentum 1)."""
        horizon = np.zeros(len(self.layers))
        for entry in self.audit:
            if not isinstance(entry, dict) or entry.get("layer") not in self.index:
                continue
            try:
                momentum = float(entry.get("batch_norm_momentum"))
            except (TypeError, ValueError):
                continue
            if 0.0 <= momentum < 1.0:
                horizon[self.index[entry["layer"]]] = 1.0 / (1.0 - momentum)
        return horizon

    def audit_of(self, layer):
        if not hasattr(self, "_audit_by_layer"):
            self._audit_by_layer = {}
            for entry in self.audit:
                if isinstance(entry, dict):
                    self._audit_by_layer.setdefault(entry.get("layer"), entry)
        return self._audit_by_layer.get(layer)


def _runs(mask, min_length):
    """`(start, end)` (inclusive) of runs of True at least `min_length` long."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [
        (int(a), int(b)) for a, b in zip(starts, ends) if b - a + 1 >= min_length
    ]


def _sustained(condition, min_length):
    """Per layer: its qualifying runs, for layers that have any."""
    out = {}
    # Longest run of True ending at each row, for every layer at once; only
    # layers whose longest run is long enough are walked.
    length = np.zeros(condition.shape[1], np.int64)
    longest = np.zeros(condition.shape[1], np.int64)
    for row in condition:
        length = (length + 1) * row
        np.maximum(longest, length, out=longest)
    for layer in np.flatnonzero(longest >= min_length):
        out[int(layer)] = _runs(condition[:, layer], min_length)
    return out


def _finding(view, rule, severity, layer_ids, first_row, last_row, summary,
             remedy, metric, group="", details=None, ongoing=None):
    layer_ids = sorted(set(layer_ids))
    if ongoing is None:
        ongoing = last_row == len(view.steps) - 1
    finding = Finding(
        rule=rule,
        severity=severity,
        layers=[view.layers[i] for i in layer_ids],
        first_step=view.step(first_row),
        last_step=view.step(last_row),
        message="",
        remedy=remedy,
        metric=metric,
        ongoing=bool(ongoing),
        summary=summary,
        group=group,
        details=details or {},
    )
    finding.message = render_message(finding, view.layers)
    return finding


def render_message(finding, layer_order=None):
    """The one-line message of a finding from its layers, summary and steps."""
    phrase = describe_layers(finding.layers, layer_order)
    if finding.rule == "nonfinite":
        phrase = ""  # The summary names the layer it started in.
    if finding.rule == "init_mismatch":
        when = ""
    elif finding.ongoing:
        when = f" since step {finding.first_step}"
    elif finding.first_step == finding.last_step:
        when = f" at step {finding.first_step}"
    else:
        when = f" at steps {finding.first_step}\u2013{finding.last_step}"
    text = f"{phrase}: {finding.summary}{when}" if phrase else f"{finding.summary}{when}"
    note = finding.details.get("note") if finding.details else None
    if note:
        text += f"; {note}"
    return text


def describe_layers(layers, layer_order=None, limit=3):
    """`"layers dense_1–dense_3, out"`: consecutive layers as ranges."""
    layers = list(layers)
    if not layers:
        return ""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    order = {n: i for i, n in enumerate(layer_order or layers)}
    positions = [order.get(n) for n in layers]
    groups = []
    if None in positions:
        groups = [[n] for n in layers]
    else:
        pairs = sorted(zip(positions, layers))
        for pos, name in pairs:
            if groups and pos == groups[-1][-1][0] + 1:
                groups[-1].append((pos, name))
            else:
                groups.append([(pos, name)])
        groups = [[name for _, name in g] for g in groups]
    parts = [g[0] if len(g) == 1 else f"{g[0]}\u2013{g[-1]}" for g in groups]
    if len(parts) > limit + 1:
        parts = parts[:limit] + [f"{len(parts) - limit} more ranges"]
    return "layers " + ", ".join(parts)


def _percent(values):
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "?"
    low, high = round(100 * min(values)), round(100 * max(values))
    return f"{low}%" if low == high else f"{low}\u2013{high}%"


def _nanmax(values):
    values = [float(v) for v in values if np.isfinite(v)]
    return max(values) if values else float("nan")


def _num(value):
    """Compact number: 3 significant digits, exponent when tiny or huge."""
    if value is None or not np.isfinite(value):
        return str(value)
    a = abs(value)
    if a != 0 and (a < 1e-2 or a >= 1e5):
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if a >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


# -- rule: nonfinite -------------------------------------------------------------


def _nonfinite(view, th):
    act = np.nan_to_num(view.get("activation_nonfinite"), nan=0.0) > 0
    grad = np.nan_to_num(view.get("gradient_nonfinite"), nan=0.0) > 0
    bad = act | grad
    rows = np.flatnonzero(bad.any(axis=1))
    remedy = (
        "Lower the learning rate, clip gradients (clipnorm=1.0 on the "
        "optimizer), use the init the activation calls for, check the "
        "inputs for NaN/Inf and use a numerically stable loss "
        "(from_logits=True)."
    )
    if rows.size == 0:
        return _recorded_nonfinite(view, remedy)
    first, last = int(rows[0]), int(rows[-1])
    act_layers = np.flatnonzero(act[first])
    if act_layers.size:
        origin, kind = int(act_layers[0]), "activations"
    else:
        # Backprop runs from the loss down: the origin is the deepest layer.
        origin, kind = int(np.flatnonzero(grad[first])[-1]), "gradients"
    affected = [int(i) for i in np.flatnonzero(bad[first])]
    summary = f"NaN/Inf in the {kind} of {view.layers[origin]}"
    if len(affected) > 1:
        summary += f" and {len(affected) - 1} more layer{'s' if len(affected) > 2 else ''}"
    ongoing = last == len(view.steps) - 1
    return [
        _finding(
            view, "nonfinite", WARNING, affected, first, last, summary, remedy,
            "activation_nonfinite" if kind == "activations" else "gradient_nonfinite",
            details={"origin": view.layers[origin], "kind": kind[:-1]},
            ongoing=ongoing,
        )
    ]


def _recorded_nonfinite(view, remedy):
    """From `first_nonfinite` alone, when no row at hand shows the NaN/Inf."""
    first = view.first_nonfinite
    if not isinstance(first, dict) or first.get("layer") not in view.index:
        return []
    try:
        step = int(first["step"])
    except (KeyError, TypeError, ValueError):
        return []
    kind = "gradient" if first.get("kind") == "gradient" else "activation"
    finding = Finding(
        rule="nonfinite", severity=WARNING, layers=[first["layer"]],
        first_step=step, last_step=step, message="", remedy=remedy,
        metric=f"{kind}_nonfinite", ongoing=False,
        summary=f"NaN/Inf in the {kind}s of {first['layer']}",
        details={"origin": first["layer"], "kind": kind},
    )
    finding.message = render_message(finding, view.layers)
    return [finding]


# -- rules: vanishing and exploding gradients -------------------------------------


def _signature(view, layer):
    """What kind of layer: like layers form the chain gradients are compared on."""
    audit = view.audit_of(view.layers[layer])
    return (
        view.layers[layer].rpartition("/")[0],  # the (sub-)model it is in
        bool(view.applies("bn_skew")[layer] or view.applies("bn_batch_var")[layer]),
        bool(view.applies("gradient_norm")[layer]),
        bool(view.applies("saturation_fraction")[layer]),
        bool(view.applies("dead_units")[layer]),
        audit.get("activation") if audit else None,
    )


def main_chain(view):
    """The layers backward variance is compared across: the largest set of
    like layers (same kind, same activation, same (sub-)model) that carry a
    gradient, in depth order. Comparing like with like keeps a read-out layer
    or BatchNorm's rescaling from passing for a trend, and a GAN's generator
    and discriminator (two networks, two losses) from passing for one chain.
    Empty if fewer than 2."""
    grad = view.get("gradient_var")
    carries = np.isfinite(grad).any(axis=0) & (np.nan_to_num(grad, nan=0.0) > 0).any(axis=0)
    groups = collections.OrderedDict()
    for layer in range(len(view.layers)):
        if carries[layer]:
            groups.setdefault(_signature(view, layer), []).append(layer)
    best = []
    for members in groups.values():
        span = members[-1] - members[0] if members else 0
        if len(members) > len(best) or (
            len(members) == len(best) and best and span > best[-1] - best[0]
        ):
            best = members
    return best if len(best) >= 2 else []


def gradient_var_ratio(recording):
    """The first-to-last gradient variance ratio: `gradient_var` of the first
    layer of the main chain (see `main_chain`) over the last one's, at every
    recorded step. The one definition the `vanishing_gradients` and
    `exploding_gradients` rules, the headline scalar
    `gradient_var_ratio_first_to_last` and the demo's table use.

    Args:
        recording: A recording-like object (see the module docstring).

    Returns:
        `(chain, ratio)`: the chain's layer names in depth order (empty if it
        has fewer than 2 layers) and a float array over the recorded steps,
        NaN where either end has no positive finite value.
    """
    view = recording if isinstance(recording, _View) else _View(recording)
    chain = main_chain(view)
    ratio = np.full(len(view.steps), np.nan)
    if chain:
        grad = view.get("gradient_var")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = grad[:, chain[0]] / grad[:, chain[-1]]
            ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan)
    return [view.layers[i] for i in chain], ratio


def _gradient_flow(view, th):
    names, ratio = gradient_var_ratio(view)
    chain = [view.index[n] for n in names]
    found = []
    with np.errstate(divide="ignore", invalid="ignore"):
        if chain:
            first, last = chain[0], chain[-1]
            per_layer = ratio ** (1.0 / (last - first)) if last > first else ratio
            vanishing = ratio <= th.vanishing_ratio
            exploding = ratio >= th.exploding_ratio
        else:
            vanishing = exploding = np.zeros(len(view.steps), bool)
    k = th.min_records

    # Vanishing: sustained.
    runs = _runs(vanishing, k)
    if runs:
        start, end = runs[0][0], runs[-1][1]
        recent = runs[-1]
        worst = float(np.nanmedian(ratio[recent[0]:recent[1] + 1]))
        step_factor = float(np.nanmedian(per_layer[recent[0]:recent[1] + 1]))
        summary = (
            f"gradient variance at {view.layers[chain[0]]} is {_num(worst)} of "
            f"that at {view.layers[chain[-1]]} ({_num(step_factor)}\u00d7 per layer)"
        )
        found.append(
            _finding(
                view, "vanishing_gradients", WARNING, chain, start, end, summary,
                "Use a non-saturating activation (ReLU family, ELU, SELU) with "
                "its init (He for ReLU, LeCun for SELU; Glorot for "
                "tanh/sigmoid), or add BatchNormalization before or after "
                "each hidden layer's activation.",
                "gradient_var",
                details={"ratio": worst, "per_layer": step_factor,
                         "from": view.layers[chain[-1]], "to": view.layers[chain[0]]},
            )
        )

    # Exploding: sustained growth, growth then NaN/Inf, or a gradient-norm spike.
    nonfinite_rows = np.flatnonzero(
        (np.nan_to_num(view.get("activation_nonfinite"), nan=0.0) > 0).any(axis=1)
        | (np.nan_to_num(view.get("gradient_nonfinite"), nan=0.0) > 0).any(axis=1)
    )
    growth_runs = _runs(exploding, k)
    diverged = False
    if nonfinite_rows.size:
        first_bad = int(nonfinite_rows[0])
        # Growth on one of the few recorded steps just before NaN/Inf.
        lead = max(0, first_bad - k)
        before = np.flatnonzero(exploding[lead: first_bad + 1]) + lead
        if before.size:
            diverged = True
            growth_runs = sorted(set(growth_runs) | {(int(before[0]), first_bad)})
    spikes = _spikes(view, th)
    # Updates as large as the weights in most layers at once: the weights
    # are replaced by their updates; whatever the gradients' shape, training
    # has diverged (a learning rate far too large).
    all_updates = view.get("update_ratio")
    kernels = np.isfinite(all_updates).any(axis=0)
    with np.errstate(invalid="ignore"):
        over = all_updates[:, kernels] >= th.update_ratio_diverged
    replaced = np.flatnonzero(2 * over.sum(axis=1) >= max(1, int(kernels.sum()))) if kernels.any() else []
    if growth_runs and not diverged and all(_followed_by_batch_norm(view, l) for l in chain):
        # BatchNorm makes the loss blind to the scale of the layer before it,
        # whose gradient then scales with 1/(its output's std): growth across
        # depth says nothing there. Only large updates or NaN/Inf do.
        update = view.get("update_ratio")[:, chain]
        if not (np.nan_to_num(update, nan=0.0) >= th.update_ratio_max).any():
            growth_runs = []
    if not growth_runs and not spikes and not len(replaced):
        return found
    rows, layers, parts = [], set(), []
    details = {}
    severity = INFO
    if growth_runs:
        rows += [growth_runs[0][0], growth_runs[-1][1]]
        layers.update(chain)
        recent = growth_runs[-1]
        span = slice(recent[0], recent[1] + 1)
        worst = float(np.nanmedian(ratio[span])) if np.isfinite(ratio[span]).any() else float("nan")
        step_factor = float(np.nanmedian(per_layer[span])) if np.isfinite(per_layer[span]).any() else float("nan")
        parts.append(
            f"gradient variance at {view.layers[chain[0]]} is {_num(worst)}\u00d7 "
            f"that at {view.layers[chain[-1]]} ({_num(step_factor)}\u00d7 per layer)"
        )
        details.update(ratio=worst, per_layer=step_factor)
        update = view.get("update_ratio")[:, chain]
        spans = np.zeros(len(view.steps), bool)
        for a, b in growth_runs:
            spans[a:b + 1] = True
        largest = update[spans]
        largest = float(np.nanmax(largest)) if np.isfinite(largest).any() else float("nan")
        details["update_ratio_max"] = largest
        if diverged:
            severity = WARNING
            details["note"] = f"NaN/Inf followed at step {view.step(int(nonfinite_rows[0]))}"
        elif np.isfinite(largest) and largest >= th.update_ratio_max:
            severity = WARNING
            parts.append(f"updates up to {_num(largest)} of the weights")
        elif np.isfinite(largest):
            details["note"] = (
                f"contained: updates stay below {_num(largest)} of the weights "
                "(clipping or an adaptive optimizer)"
            )
    if spikes:
        severity = WARNING
        spike_rows = [r for r, _, _ in spikes]
        rows += [min(spike_rows), max(spike_rows)]
        layers.update(l for _, l, _ in spikes)
        row, layer, factor = max(spikes, key=lambda s: s[2])
        parts.append(
            f"kernel gradient norm of {view.layers[layer]} jumped {_num(factor)}\u00d7 "
            f"at step {view.step(row)}"
        )
        details["spike_factor"] = factor
    if len(replaced):
        severity = WARNING
        rows += [int(replaced[0]), int(replaced[-1])]
        worst_row = int(replaced[np.argmax(np.nanmax(all_updates[replaced][:, kernels], axis=1))])
        over_layers = np.flatnonzero(kernels)[over[worst_row]]
        layers.update(int(l) for l in over_layers)
        largest = float(np.nanmax(all_updates[worst_row]))
        parts.append(
            f"updates up to {_num(largest)}\u00d7 the weights in {len(over_layers)} of "
            f"{int(kernels.sum())} layers"
        )
        details["update_ratio_max"] = largest
    found.append(
        _finding(
            view, "exploding_gradients", severity, layers, min(rows), max(rows),
            ", ".join(parts),
            "Clip gradients (clipnorm=1.0 or clipvalue on the optimizer), "
            "lower the learning rate, use the init the activation calls for "
            "(He, 2/fan_in, for ReLU), or add BatchNormalization.",
            "gradient_var" if growth_runs else "gradient_norm" if spikes else "update_ratio",
            details=details,
        )
    )
    return found


def _spikes(view, th):
    """`(row, layer, factor)` where a kernel gradient norm jumped."""
    norm = view.get("gradient_norm")
    rows, layers = norm.shape
    out = []
    if rows <= th.min_records or not np.isfinite(norm).any():
        return out
    h = th.spike_history
    # history[r] = the (up to) h rows before row r, NaN-padded at the start.
    padded = np.concatenate([np.full((h, layers), np.nan), norm], axis=0)
    history = np.lib.stride_tricks.sliding_window_view(padded, h, axis=0)[:rows]
    ordered = np.sort(history, axis=-1)  # [rows, layers, h], NaN last
    count = np.isfinite(history).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0]
    with np.errstate(all="ignore"):
        base = 0.5 * (low + high)  # the median of the finite history
        factor = norm / base
        jumped = (count >= th.min_records) & (base > 0) & np.isfinite(factor) & (
            factor >= th.spike_factor
        )
    # What an explosion shows besides one jump (see `Thresholds.spike_factor`).
    update = np.nan_to_num(view.get("update_ratio"), nan=0.0)
    bad = (np.nan_to_num(view.get("activation_nonfinite"), nan=0.0) > 0).any(axis=1) | (
        np.nan_to_num(view.get("gradient_nonfinite"), nan=0.0) > 0).any(axis=1)
    with np.errstate(all="ignore"):
        lasting = np.zeros_like(jumped)
        lasting[:-1] = jumped[:-1] & (norm[1:] >= th.spike_factor * base[:-1])
    for row, layer in zip(*np.nonzero(jumped)):
        corroborated = (
            lasting[row, layer]
            or jumped[row].sum() >= 2
            or update[row, layer] >= th.update_ratio_max
            or bad[row:row + th.min_records + 1].any()
        )
        if corroborated:
            out.append((int(row), int(layer), float(factor[row, layer])))
    return out


# -- rule: saturation --------------------------------------------------------------


def _saturation(view, th):
    sat = view.get("saturation_fraction")
    with np.errstate(invalid="ignore"):
        condition = sat >= th.saturation_fraction
    # A sigmoid or softmax output feeding a cross-entropy loss passes p - y
    # back to its logits, saturated or not: a confident classifier is not
    # a saturated network.
    condition[:, view.loss_heads()] = False
    hits = _sustained(condition, th.min_records)
    if not hits:
        return []
    first = min(r[0][0] for r in hits.values())
    last = max(r[-1][1] for r in hits.values())
    latest = [sat[runs[-1][1], layer] for layer, runs in hits.items()]
    summary = f"{_percent(latest)} of outputs in the flat region of the nonlinearity"
    remedy = (
        "Scale the init to the activation (Glorot for sigmoid/tanh), "
        "standardise the inputs, add BatchNormalization before the "
        "activation, or use a non-saturating activation (ReLU family, ELU)."
    )
    details = {"fractions": {view.layers[l]: float(v) for l, v in zip(hits, latest)}}
    return [
        _finding(
            view, "saturation", WARNING, hits.keys(), first, last, summary,
            remedy, "saturation_fraction", details=details,
        )
    ]


# -- rule: dying units -------------------------------------------------------------


def _units(view):
    """Per layer: its unit count, from dead_units / dead_fraction (NaN if unknown)."""
    dead = view.get("dead_units")
    fraction = view.get("dead_fraction")
    with np.errstate(divide="ignore", invalid="ignore"):
        units = np.where((fraction > 0) & (dead > 0), dead / fraction, np.nan)
    out = np.full(len(view.layers), np.nan)
    known = np.isfinite(units).any(axis=0)
    if known.any():
        out[known] = np.round(np.nanmedian(units[:, known], axis=0))
    return out


def _dying_units(view, th):
    fraction = view.get("dead_fraction")
    window = view.get("dead_units_window") / _units(view)[None, :]
    with np.errstate(invalid="ignore"):
        condition = (window >= th.dead_fraction) | (fraction >= th.dead_fraction_batch)
    hits = _sustained(condition, th.min_records)
    if not hits:
        return []
    first = min(r[0][0] for r in hits.values())
    last = max(r[-1][1] for r in hits.values())
    latest = {}
    for layer, runs in hits.items():
        row = runs[-1][1]
        values = [v for v in (fraction[row, layer], window[row, layer]) if np.isfinite(v)]
        latest[layer] = max(values) if values else float("nan")
    summary = f"{_percent(list(latest.values()))} of units dead"
    return [
        _finding(
            view, "dying_units", WARNING, hits.keys(), first, last, summary,
            "Try LeakyReLU(negative_slope=0.2) or ELU, He init "
            "(kernel_initializer='he_normal'), or lower the learning rate.",
            "dead_fraction",
            details={"fractions": {view.layers[l]: float(v) for l, v in latest.items()}},
        )
    ]


# -- rule: init mismatch -----------------------------------------------------------


def _followed_by_batch_norm(view, layer):
    audit = view.audit_of(view.layers[layer])
    if audit and audit.get("feeds_batch_norm") is not None:
        return bool(audit["feeds_batch_norm"])  # from the model's graph
    nxt = layer + 1
    return nxt < len(view.layers) and bool(
        view.applies("bn_skew")[nxt] or view.applies("bn_batch_var")[nxt]
    )


def _init_mismatch(view, th):
    groups = collections.OrderedDict()
    bound = math.log(th.init_ratio)
    for entry in view.audit:
        layer = entry.get("layer")
        activation = entry.get("activation")
        scheme = entry.get("recommended")
        try:
            ratio = float(entry.get("ratio"))
        except (TypeError, ValueError):
            continue
        if (
            layer not in view.index
            or activation in (None, "unknown")
            or scheme not in _SCHEMES
            or not np.isfinite(ratio)
            or ratio <= 0
            or abs(math.log(ratio)) <= bound
        ):
            continue
        if _followed_by_batch_norm(view, view.index[layer]):
            continue  # BatchNorm rescales whatever the kernel gives.
        direction = "high" if ratio > 1 else "low"
        groups.setdefault((activation, scheme, direction), []).append(
            (view.index[layer], ratio)
        )
    found = []
    for (activation, scheme, direction), members in groups.items():
        name, formula, keras_name = _SCHEMES[scheme]
        ratios = [r for _, r in members]
        low, high = min(ratios), max(ratios)
        span = _num(low) if _num(low) == _num(high) else f"{_num(low)}\u2013{_num(high)}"
        worst = max(ratios, key=lambda r: abs(math.log(r)))
        severity = WARNING if abs(math.log(worst)) >= math.log(th.init_warning_ratio) else INFO
        summary = (
            f"{activation} kernels with {span}\u00d7 the variance of {name} init "
            f"({formula}), which {activation} calls for"
        )
        found.append(
            _finding(
                view, "init_mismatch", severity, [l for l, _ in members], 0, 0,
                summary,
                f"Use kernel_initializer='{keras_name}' ({name}: variance "
                f"{formula}) for {activation} layers.",
                "activation_var",
                group=f"{activation}/{scheme}/{direction}",
                details={"activation": activation, "recommended": scheme,
                         "ratios": {view.layers[l]: r for l, r in members}},
                ongoing=False,
            )
        )
        found[-1].first_step = found[-1].last_step = view.audit_step
    return found


# -- rule: not self-normalizing ----------------------------------------------------


def _selu_layers(view):
    """`(kernel_layer, output_layer)` index pairs of the SELU stack."""
    saturates = view.applies("saturation_fraction")
    has_kernel = view.applies("gradient_norm")
    pairs = []
    for entry in view.audit:
        if entry.get("activation") != "selu" or entry.get("layer") not in view.index:
            continue
        kernel = view.index[entry["layer"]]
        if saturates[kernel]:
            pairs.append((kernel, kernel))  # Dense(activation="selu")
        elif kernel + 1 < len(view.layers) and saturates[kernel + 1] and not has_kernel[kernel + 1]:
            pairs.append((kernel, kernel + 1))  # Dense, then Activation("selu")
    return pairs


def _not_self_normalizing(view, th):
    pairs = _selu_layers(view)
    if not pairs:
        return []
    outputs = [o for _, o in pairs]
    mean = view.get("activation_mean")[:, outputs]
    var = view.get("activation_var")[:, outputs]
    with np.errstate(divide="ignore", invalid="ignore"):
        off = (np.abs(mean) > th.selu_mean_max) | (
            np.abs(np.log(var)) > math.log(th.selu_var_factor)
        )
    hits = _sustained(off, th.min_records)
    if not hits:
        return []
    flagged = sorted(hits)
    first = min(r[0][0] for r in hits.values())
    last = max(r[-1][1] for r in hits.values())
    row = max(r[-1][1] for r in hits.values())
    worst_var = max((var[row, i] for i in flagged if np.isfinite(var[row, i])),
                    key=lambda v: abs(math.log(v)) if v > 0 else 0, default=float("nan"))
    worst_mean = max((mean[row, i] for i in flagged if np.isfinite(mean[row, i])),
                     key=abs, default=float("nan"))
    causes, remedies = [], []
    # Wrong init.
    bound = math.log(th.init_ratio)
    wrong = []
    for entry in view.audit:
        if entry.get("activation") == "selu" and entry.get("layer") in view.index:
            try:
                ratio = float(entry.get("ratio"))
            except (TypeError, ValueError):
                continue
            if ratio > 0 and abs(math.log(ratio)) > bound:
                wrong.append((view.index[entry["layer"]], ratio))
    if wrong:
        ratios = [r for _, r in wrong]
        causes.append(
            f"wrong init ({describe_layers([view.layers[i] for i, _ in wrong], view.layers)}: "
            f"kernel variance {_num(min(ratios))}"
            + (f"\u2013{_num(max(ratios))}" if _num(min(ratios)) != _num(max(ratios)) else "")
            + "\u00d7 LeCun's)"
        )
        remedies.append("initialise with kernel_initializer='lecun_normal'")
    # Inputs not standardised: the first SELU kernel's input variance.
    first_kernel = pairs[0][0]
    gain = view.get("activation_gain")[:, first_kernel]
    out_var = view.get("activation_var")[:, first_kernel]
    with np.errstate(divide="ignore", invalid="ignore"):
        in_var = out_var / gain
    in_var = in_var[np.isfinite(in_var) & (in_var > 0)]
    input_variance = float(np.median(in_var)) if in_var.size else float("nan")
    first_off = 0 in hits
    if np.isfinite(input_variance) and abs(math.log(input_variance)) > math.log(th.input_var_factor):
        causes.append(
            f"inputs not standardised (variance {_num(input_variance)} into "
            f"{view.layers[first_kernel]})"
        )
        remedies.append("standardise the inputs (mean 0, variance 1 per feature)")
    elif first_off and not wrong:
        causes.append(
            f"inputs not standardised ({view.layers[outputs[0]]}, the first SELU "
            "layer, is already off)"
        )
        remedies.append("standardise the inputs (mean 0, variance 1 per feature)")
    # A layer that breaks the plain SELU stack.
    members = {i for pair in pairs for i in pair}
    breakers = [
        i for i in range(outputs[0] + 1, outputs[-1])
        if i not in members
    ]
    if breakers:
        causes.append(
            f"{describe_layers([view.layers[i] for i in breakers], view.layers)} "
            f"break{'s' if len(breakers) == 1 else ''} the plain SELU stack"
        )
        remedies.append(
            "keep the SELU stack plain (Dense + SELU only: no BatchNormalization, "
            "other activations or skip connections; AlphaDropout instead of Dropout)"
        )
    elif not causes:
        start = flagged[0]
        if start > 0:
            causes.append(
                f"drift starts at {view.layers[outputs[start]]}: the weights have "
                "left the LeCun scale during training"
            )
        else:
            causes.append("the weights have left the LeCun scale during training")
        remedies.append("lower the learning rate")
    summary = (
        f"SELU outputs drift from mean 0 / variance 1 (mean {_num(worst_mean)}, "
        f"variance {_num(worst_var)})"
    )
    remedy = "; ".join(remedies)
    finding = _finding(
        view, "not_self_normalizing", WARNING, [outputs[i] for i in flagged],
        first, last, summary,
        remedy[:1].upper() + remedy[1:] + ". Self-normalisation needs "
        "standardised inputs, LeCun-normal init and a plain sequential stack.",
        "activation_var",
        details={"causes": causes, "input_variance": input_variance},
    )
    finding.details["note"] = "likely cause: " + "; ".join(causes)
    finding.message = render_message(finding, view.layers)
    return [finding]


# -- rule: BatchNorm skew ----------------------------------------------------------


def _bn_skew(view, th):
    skew = view.get("bn_skew")
    batch_var = view.get("bn_batch_var")
    moving_var = view.get("bn_moving_var")
    with np.errstate(divide="ignore", invalid="ignore"):
        var_gap = np.abs(np.log(moving_var / batch_var))
        # One score per cell: >= 1 where either gap crosses its threshold.
        score = np.fmax(skew / th.bn_skew_max, var_gap / math.log(th.bn_var_ratio_max))
        condition = score >= 1.0
    # In its moving averages' horizon a layer's gap is expected (they start
    # at mean 0, variance 1): only a gap that grows there counts.
    warm = view.steps[:, None] < view.batch_norm_horizon()[None, :]
    hits = _sustained(condition & ~warm, th.min_records)
    growing = {
        layer: runs for layer, runs in _sustained(condition & warm, 2 * th.min_records).items()
        if layer not in hits and _growing(score[runs[-1][0]:runs[-1][1] + 1, layer], th)
    }
    hits.update(growing)
    if not hits:
        return []
    first = min(r[0][0] for r in hits.values())
    last = max(r[-1][1] for r in hits.values())
    # Moving averages that lag behind (warm-up, a momentum close to 1) close
    # their gap geometrically: the gap in the statistics' own units shrinks
    # record after record. A gap from noisy or shifting batches does not.
    with np.errstate(invalid="ignore"):
        gaps_in_units = {
            "mean": skew * np.sqrt(np.abs(moving_var)),  # |batch - moving mean|
            "var": np.abs(moving_var - batch_var),
        }
        triggered = {
            "mean": skew >= th.bn_skew_max,
            "var": var_gap >= math.log(th.bn_var_ratio_max),
        }
    converging = []
    for layer, runs in hits.items():
        a, b = runs[-1]
        if layer in growing:
            converging.append(False)
            continue
        kinds = [k for k in ("mean", "var") if triggered[k][a:b + 1, layer].any()]
        if b - a + 1 < 2 * th.min_records:
            converging.append(True)  # too young to tell a lag from a gap
            continue
        converging.append(all(
            _shrinking(gaps_in_units[k][a:b + 1, layer], th) for k in kinds
        ))
    rows = [runs[-1][1] for runs in hits.values()]
    worst_skew = _nanmax(skew[r, l] for r, l in zip(rows, hits))
    worst_ratio = _nanmax(
        math.exp(var_gap[r, l]) for r, l in zip(rows, hits) if np.isfinite(var_gap[r, l])
    )
    gaps = []
    if np.isfinite(worst_skew) and worst_skew >= th.bn_skew_max:
        gaps.append(f"mean gap {_num(worst_skew)} moving std")
    if np.isfinite(worst_ratio) and worst_ratio >= th.bn_var_ratio_max:
        gaps.append(f"variance ratio {_num(worst_ratio)}\u00d7")
    if not gaps:  # The gap closed at the run's end: say how far it got.
        gaps.append(f"mean gap {_num(worst_skew)} moving std, variance ratio {_num(worst_ratio)}\u00d7")
    summary = "batch statistics far from the moving statistics (" + ", ".join(gaps) + ")"
    details = {"skew": float(worst_skew), "var_ratio": float(worst_ratio)}
    if growing and not all(converging):
        details["note"] = "growing within the moving averages' horizon"
    if all(converging):
        severity = INFO
        details["note"] = "shrinking: the moving statistics are still converging"
        remedy = (
            "Train longer before evaluating, or lower BatchNormalization's "
            "momentum (e.g. 0.9) so the moving statistics catch up sooner."
        )
    else:
        severity = WARNING
        remedy = (
            "Use larger batches, shuffle the training data, and lower "
            "BatchNormalization's momentum (e.g. 0.9) so the moving statistics "
            "keep up; or place BN where its input statistics are stable."
        )
    return [
        _finding(view, "bn_skew", severity, hits.keys(), first, last, summary,
                 remedy, "bn_skew", details=details)
    ]


def _growing(score, th):
    """Whether a gap grew by `bn_growth_factor` (medians of the first and
    last `min_records` records)."""
    score = score[np.isfinite(score)]
    k = th.min_records
    if score.size < 2 * k:
        return False
    return bool(np.median(score[-k:]) >= th.bn_growth_factor * np.median(score[:k]))


def _shrinking(gap, th):
    """Whether a gap shrank by `bn_converging_drop` (medians of the first and
    last `min_records` records) and fell on at least 3 of 4 records."""
    gap = gap[np.isfinite(gap)]
    if gap.size < 2:
        return False
    k = th.min_records
    head, tail = np.median(gap[:k]), np.median(gap[-k:])
    falling = np.mean(np.diff(gap) < 0)
    return bool(tail <= (1.0 - th.bn_converging_drop) * head and falling >= 0.75)


# -- while training: a bounded window and a history ---------------------------------


class RecentWindow:
    """The last `maxlen` recorded rows, as a recording-like object.

    Memory stays `O(maxlen x metrics x layers)` however long training runs.

    Args:
        layers: Watched layer names in depth order.
        maxlen: How many recorded steps to keep.
    """

    def __init__(self, layers, maxlen=64):
        self.layers = list(layers)
        self._rows = collections.deque(maxlen=int(maxlen))
        self.init_audit = None
        self.init_audit_step = None  # the step the audit describes
        self.first_nonfinite = None

    def append(self, step, layer_metrics):
        """Adds one recorded step: `{metric: per-layer vector}`."""
        row = {
            name: np.asarray(vector, np.float32).reshape(-1).copy()
            for name, vector in layer_metrics.items()
        }
        self._rows.append((int(step), row))

    def __len__(self):
        return len(self._rows)

    @property
    def steps(self):
        return np.array([s for s, _ in self._rows], dtype=np.int64)

    @property
    def metrics(self):
        names = set()
        for _, row in self._rows:
            names.update(row)
        return sorted(names)

    def metric(self, name):
        if not any(name in row for _, row in self._rows):
            raise KeyError(name)
        out = np.full((len(self._rows), len(self.layers)), np.nan)
        for i, (_, row) in enumerate(self._rows):
            if name in row and row[name].shape == (len(self.layers),):
                out[i] = row[name]
        return out


class FindingTracker:
    """Folds the findings of successive evaluations into one history.

    A finding is identified by its `key` (`rule`, `group`). Its first step is
    the earliest seen, its layers the union, its severity the worst.

    Args:
        layer_order: Layer names in depth order (for messages).
    """

    def __init__(self, layer_order=()):
        self.layer_order = list(layer_order)
        self._seen = collections.OrderedDict()

    def update(self, findings):
        """Merges one evaluation.

        Returns:
            `[(status, finding)]` for findings that are `"new"` or
            `"changed"` (more layers, or a worse severity).
        """
        events = []
        current = {f.key for f in findings}
        for f in findings:
            old = self._seen.get(f.key)
            if old is None:
                merged = dataclasses.replace(f, layers=list(f.layers), details=dict(f.details))
                self._seen[f.key] = merged
                events.append(("new", merged))
                continue
            new_layers = [n for n in f.layers if n not in old.layers]
            worse = old.severity != WARNING and f.severity == WARNING
            order = {n: i for i, n in enumerate(self.layer_order)}
            old.layers = sorted(set(old.layers) | set(f.layers), key=lambda n: order.get(n, len(order)))
            old.first_step = min(old.first_step, f.first_step)
            old.last_step = max(old.last_step, f.last_step)
            old.ongoing = f.ongoing
            old.summary = f.summary
            old.remedy = f.remedy
            old.metric = f.metric
            old.details = dict(f.details)
            if worse:
                old.severity = WARNING
            old.message = render_message(old, self.layer_order)
            if new_layers or worse:
                events.append(("changed", old))
        for key, old in self._seen.items():
            if key not in current and old.ongoing and old.rule != "init_mismatch":
                old.ongoing = False
                old.message = render_message(old, self.layer_order)
        return events

    def findings(self):
        """Every finding seen so far, warnings first."""
        return sort_findings(list(self._seen.values()))


def counts(findings):
    """`{"warning": n, "info": m}`."""
    out = {WARNING: 0, INFO: 0}
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out
