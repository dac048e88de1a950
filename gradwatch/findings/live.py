"""Findings while training: what the callback hands each recorded step to.

`LiveFindings` notes where NaN/Inf first appeared, keeps a bounded window of
recent rows (`RecentWindow`), evaluates it as steps are recorded, folds the
results into a history (`FindingTracker`), prints what appears, and writes
the findings document (`gradwatch_tensorboard.findings_document`). It also
gives each step's headline scalars, on the main chain of its last
evaluation.
"""

import time

import numpy as np

from gradwatch_tensorboard import findings_document, metadata

from . import model
from .evaluation import evaluate
from .headline import headline
from .tracker import FindingTracker
from .window import RecentWindow


def first_nonfinite(step, layer_names, layer_metrics):
    """`{"step", "layer", "kind"}` of the first layer with NaN/Inf in its
    activations (else its gradients) at this step, or None.

    Example:

    >>> first_nonfinite(7, ["a", "b"], {"activation_nonfinite": [0, 2],
    ...                                  "gradient_nonfinite": [1, 0]})
    {'step': 7, 'layer': 'b', 'kind': 'activation'}
    """
    for kind in ("activation", "gradient"):
        bad = np.flatnonzero(np.nan_to_num(layer_metrics[f"{kind}_nonfinite"]) > 0)
        if bad.size:
            return {"step": int(step), "layer": layer_names[bad[0]], "kind": kind}
    return None


class LiveFindings:
    """Findings of one `fit`, as its steps are recorded.

    Memory is `O(WINDOW x metrics x layers)`, whatever the number of steps.
    Time: an evaluation costs milliseconds (tens with hundreds of layers);
    when records come faster than that matters, evaluations are spaced so
    they take at most 1/`TIME_SHARE` of the wall time, yet happen at least
    every `WINDOW // 2` records (no row leaves the window unseen) and on the
    last one. Console lines are rate-limited: a finding is printed when it
    first appears; a change (more layers, worse severity) at most once every
    `QUIET_RECORDS` recorded steps, and at most `MAX_LINES` lines per step.
    The findings document is written at the first evaluation, rewritten when
    something appears or changes or `DOCUMENT_EVERY` records have passed, and
    when `fit` ends.

    Args:
        log_dir: The run's directory (named in the summary line).
        layer_names: Watched layer names in depth order.
        audit: The init audit (list of dicts) or None.
        thresholds: A `Thresholds`.
        verbose: 0, 1 or 2, as `GradWatch`'s.
        say: Prints one console line.
        first_nonfinite: Where NaN/Inf first appeared in an earlier `fit` of
            the same callback, or None.

    Example:

    >>> live = LiveFindings("runs/a", ["dense"], None, Thresholds(), 1)
    >>> live.record(0, layer_metrics, writer)
    >>> scalars = live.headline(layer_metrics)
    >>> found = live.finish(writer)
    """

    WINDOW = 64
    TIME_SHARE = 20
    QUIET_RECORDS = 16
    MAX_LINES = 3
    DOCUMENT_EVERY = 16

    def __init__(self, log_dir, layer_names, audit, thresholds, verbose, say=print,
                 first_nonfinite=None):
        self.log_dir = log_dir
        self.layer_names = list(layer_names)
        self.thresholds = thresholds
        self.verbose = verbose
        self.say = say
        self.first_nonfinite = first_nonfinite
        self.window = RecentWindow(layer_names, self.WINDOW)
        self.window.init_audit = audit or None
        self.tracker = FindingTracker(layer_names)
        self.chain = []  # main chain's layer indices, as of the last evaluation
        self.records = 0
        self.last_printed = {}  # key -> record index
        self.pending = {}  # key -> finding whose change is not printed yet
        self.last_document = None
        self.last_step = None
        self.evaluated = 0  # records when last evaluated
        self.cost = 0.0  # seconds the last evaluation took
        self.finished_at = 0.0

    def record(self, step, layer_metrics, writer):
        """Takes one recorded step: `{metric: per-layer vector}`."""
        self._note_nonfinite(step, layer_metrics, writer)
        if self.window.init_audit_step is None:
            self.window.init_audit_step = step
        self.records += 1
        self.last_step = step
        self.window.append(step, layer_metrics)
        self.window.first_nonfinite = self.first_nonfinite
        now = time.perf_counter()
        if (
            self.records - self.evaluated < self.WINDOW // 2
            and now - self.finished_at < self.TIME_SHARE * self.cost
        ):
            return  # evaluated a moment ago; the window keeps these rows
        self._evaluate(writer)

    def headline(self, layer_metrics):
        """The headline scalars of one step (`headline.headline`)."""
        return headline(layer_metrics, self.chain)

    def _note_nonfinite(self, step, layer_metrics, writer):
        if self.first_nonfinite is not None:
            return
        self.first_nonfinite = first_nonfinite(step, self.layer_names, layer_metrics)
        if self.first_nonfinite is None:
            return
        writer.write_document(step, metadata.FIRST_NONFINITE_TAG, self.first_nonfinite)
        if self.verbose:
            self.say(
                f"GradWatch: non-finite {self.first_nonfinite['kind']}s first seen "
                f"at step {step} in layer '{self.first_nonfinite['layer']}'."
            )

    def _evaluate(self, writer):
        start = time.perf_counter()
        found = evaluate(self.window, self.thresholds)
        events = self.tracker.update(found)
        position = {n: i for i, n in enumerate(self.window.layers)}
        self.chain = [position[n] for n in found.chain]
        self.evaluated = self.records
        self.finished_at = time.perf_counter()
        self.cost = self.finished_at - start
        self._print(events)
        due = (
            self.last_document is None
            or self.records - self.last_document >= self.DOCUMENT_EVERY
        )
        if events or due:
            self._write(writer, final=False)

    def _shown(self, finding):
        if not self.verbose:
            return False
        if finding.rule == "nonfinite":
            return False  # `_note_nonfinite` has printed it.
        return finding.severity == model.WARNING or self.verbose >= 2

    def _print(self, events):
        # New findings print at once; changes wait for the quiet period.
        for _, finding in events:
            if self._shown(finding):
                self.pending[finding.key] = finding
        lines = 0
        for key, finding in list(self.pending.items()):
            last = self.last_printed.get(key)
            if last is not None and self.records - last < self.QUIET_RECORDS:
                continue
            if lines >= self.MAX_LINES:
                break
            self.say(
                f"GradWatch {finding.severity} ({finding.rule}): "
                f"{finding.message}. {finding.remedy}"
            )
            self.last_printed[key] = self.records
            del self.pending[key]
            lines += 1

    def _write(self, writer, final):
        document = findings_document.make_document(
            self.last_step, final, self.thresholds.to_json(),
            [f.to_json() for f in self.tracker.findings()],
        )
        writer.write_document(self.last_step, metadata.FINDINGS_TAG, document, kind="findings")
        self.last_document = self.records

    def finish(self, writer):
        """Writes the final document, prints the summary; returns the list."""
        if self.last_step is None:
            return self.tracker.findings()
        if self.evaluated < self.records:
            self._evaluate(writer)
        result = self.tracker.findings()
        self._write(writer, final=True)
        if self.verbose:
            tally = model.counts(result)
            if not result:
                self.say("GradWatch findings: none.")
                return result
            lines = [
                f"GradWatch findings: {tally['warning']} warning(s), "
                f"{tally['info']} info (`python -m gradwatch report "
                f"{self.log_dir}` for remedies)"
            ]
            for f in result:
                lines.append(f"  {f.severity:<7} {f.rule}: {f.message}")
            self.say("\n".join(lines))
        return result
