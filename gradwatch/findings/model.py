"""What a finding is: severities, rule ids, thresholds and `Finding`.

A `Finding` is one entry of the findings document
(`gradwatch_tensorboard.findings_document`): its fields are that schema's,
and it is read and written through that schema's validator.
"""

import dataclasses

from gradwatch_tensorboard import findings_document

WARNING = findings_document.WARNING
INFO = findings_document.INFO

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

    Example:

    >>> Thresholds(vanishing_ratio=1e-4, min_records=5).vanishing_ratio
    0.0001
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
        for name in ("min_records", "spike_history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Thresholds.{name} must be an int >= 1, got {value!r}")
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
    """One named problem: an entry of the findings document.

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

    Example:

    >>> f = Finding("dying_units", "warning", ["relu"], 10, 30, "...", "...", "dead_fraction")
    >>> Finding.from_json(f.to_json()) == f
    True
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
        """A plain dict of the document's fields (JSON-serialisable; no NaN)."""
        fields = {name: getattr(self, name) for name in findings_document.FINDING_FIELDS}
        return findings_document.parse_finding(findings_document.json_safe(fields))

    @classmethod
    def from_json(cls, document):
        """The inverse of `to_json` (unknown keys are ignored).

        Raises:
            ValueError: if `document` is not a finding
                (`findings_document.parse_finding`).
        """
        return cls(**findings_document.parse_finding(document))

    def __str__(self):
        return f"[{self.severity}] {self.rule}: {self.message}"


def sort_findings(findings):
    """Warnings first, then by rule (in `RULES` order), then by first step."""

    def order(f):
        rule = RULES.index(f.rule) if f.rule in RULES else len(RULES)
        return (f.severity != WARNING, rule, f.first_step, f.group)

    return sorted(findings, key=order)


def counts(findings):
    """`{"warning": n, "info": m}`."""
    out = {WARNING: 0, INFO: 0}
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out
