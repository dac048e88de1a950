"""How GradWatch attaches to a model: the train function it runs.

While GradWatch is attached, the model's train function is `_ModelCaptures`'
runner, which calls its capture's function for the step and then lets each
GradWatch that recorded the call write. The capture (`capture.make_capture`)
is the backend's:

- on TensorFlow, one traced function serves every step: the taps keep each
  watched layer's tensors and dLoss/d(output) as the step is traced, and one
  `cond` on an on-device recording flag measures them after Keras' step and
  stores the few numbers per layer in one variable. Unrecorded steps pay for
  the flag test only;
- on JAX, Keras' own compiled step runs unrecorded steps, and a second one,
  made with the taps, runs recorded steps and returns the numbers in its
  logs.

GradWatch instances that watch the same layers of a model share the capture,
so a new callback on an already trained model traces nothing.

The parts: `taps` (what layers and optimizers hand over while the step is
traced), `capture`, `capture_tensorflow` and `capture_jax` (the step and how
its numbers leave), `measure` (what a recorded step computes, packed into
one vector), `replicas` (state and pooling under a `tf.distribute`
strategy); this module keeps which capture a model runs (`_ModelCaptures`)
and each GradWatch's view of it (`Instrumentation`).

Under a `tf.distribute` strategy every replica measures its share of the
batch; the per-unit partial sums are gathered across replicas inside the step
and pooled exactly, so every replica stores the global numbers.
"""

import warnings
import weakref

import numpy as np
from gradwatch_tensorboard import metadata

from . import keras_internals as internals
from . import statistics as st
from .capture import Capture, InitialWeights, make_capture
from .replicas import Replicas

# The order of rows in a member's `read()`: the metrics' one list.
SNAPSHOT_METRICS = metadata.METRIC_NAMES


class _ModelCaptures:
    """Which `Capture` a model runs, for every GradWatch attached to it.

    The model runs one train function: the capture of the union of the
    attached GradWatch's layers and thresholds. Captures are kept (a few per
    model) so that a GradWatch made again with the same layers, or the next
    `fit` with the same callback, traces nothing new. A recompiled model
    has a new Keras train function: its captures are made afresh.

    Args:
        model: A compiled `keras.Model`.
    """

    KEPT = 4
    _of_model = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model):
        if model not in cls._of_model:
            cls._of_model[model] = cls(model)
        return cls._of_model[model]

    @classmethod
    def members_of(cls, model):
        captures = cls._of_model.get(model)
        return list(captures.members) if captures else []

    def __init__(self, model):
        self.model = model
        self.keras_function = None
        self.members = []
        self.captures = {}
        self.current = None
        self._plans = {}
        self.initial = InitialWeights()  # Shared by the model's captures.
        self.runner = self._run

    def _keras_train_function(self):
        function = internals.train_function(self.model)
        if function is self.runner:
            return self.keras_function  # Ours, left by an interrupted fit.
        return function

    def join(self, member):
        if not self.members:
            self.keras_function = self._keras_train_function()
            internals.build_optimizer(self.model)
        # A fit is starting: a recording planned by one that was interrupted
        # before its step ran is not to be written.
        for plan in self._plans.values():
            plan[1] = False
        self.members.append(member)
        self._switch()

    def leave(self, member):
        if member in self.members:
            self.members.remove(member)
        self._plans.pop(member, None)
        if self.members:
            self._switch()
            return
        if self.current is not None:
            self.current.uninstall()
            self.current = None
        internals.set_train_function(self.model, self.keras_function)

    def _switch(self):
        layers, seen = [], set()
        for member in self.members:
            for layer, nonlinearity in member.selected:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    layers.append((layer, nonlinearity))
        thresholds = tuple(sorted({m.saturation_threshold for m in self.members}))
        # Distributions cost tracing time on the first fit: only a capture
        # some member wants them from measures them.
        distributions = any(m.distributions for m in self.members)
        key = (tuple(id(layer) for layer, _ in layers), thresholds, distributions)
        capture = self.captures.get(key)
        if capture is None or capture.keras_function is not self.keras_function:
            self.captures = {
                k: c for k, c in self.captures.items()
                if c.keras_function is self.keras_function
            }
            while len(self.captures) >= self.KEPT:
                self.captures.pop(next(iter(self.captures)))
            capture = make_capture(
                self.model, self.keras_function, layers, thresholds, distributions, self.initial
            )
            self.captures[key] = capture
        if self.current is not capture:
            if self.current is not None:
                self.current.uninstall()
            capture.install()
            self.current = capture
        capture.on_unwatchable = self._unwatchable
        internals.set_train_function(self.model, self.runner)

    def _unwatchable(self, tap, reason):
        for member in self.members:
            member.mark_unwatchable(tap.layer, reason)

    def plan(self, member, step, record, distributions=False):
        """`member` records step `step` or not (and its distributions or
        not); the flags are on if any member's are."""
        self._plans[member] = [step, record, record and distributions]
        now = [p for p in self._plans.values() if p[0] == step]
        self.current.set_recording(
            any(p[1] for p in now), any(p[2] for p in now)
        )

    def _run(self, *args):
        """The model's train function while GradWatch is attached: the
        capture's, then each GradWatch that recorded this call writes.

        Writing here rather than in `on_train_batch_end` keeps Keras from
        converting every step's logs to Python numbers for a batch-end
        callback (about 1 ms a step on a small model here), and a record is
        still written before any other callback can interrupt `fit`.

        Args:
            *args: Keras' arguments: `(iterator)` on TensorFlow,
                `(state, iterator)` on JAX.
        """
        recorders = [m for m, plan in self._plans.items() if plan[1]]
        capture = self.current
        outputs = capture.current_function(*args)
        outputs, last_step = capture.finish_call(outputs, bool(recorders))
        for member in recorders:
            self._plans[member][1] = False  # Written once.
            member.recorded(last_step)
        return outputs


class Instrumentation:
    """One GradWatch's view of its model's capture.

    Args:
        model: A compiled `keras.Model`.
        selected: `(path, layer, nonlinearity)` for every layer to watch.
        saturation_threshold: See `GradWatch`.
        keep: Optional predicate on a layer, checked once the first recorded
            step has built every layer; layers it rejects are dropped.
        distributions: Whether this GradWatch ever records distributions.
    """

    def __init__(self, model, selected, saturation_threshold, keep=None, distributions=True):
        self.model = model
        self.optimizer = model.optimizer
        self.replicas = Replicas.of(model)
        self.selection = list(selected)
        self.paths = {id(layer): path for path, layer, _ in selected}
        self.selected = [(layer, nl) for _, layer, nl in selected]
        self.saturation_threshold = saturation_threshold
        self.distributions = distributions
        self._keep = keep
        self._unwatchable = {}
        self._captures = None
        self._watched = None  # (capture, [tap]) in forward order
        self._windows = {}
        self.attached = False
        self._attached_at = None
        self._last_step = None
        # Called after a call of the train function that this instrumentation
        # records (see `_ModelCaptures._run`).
        self.on_recorded = None

    def recorded(self, last_step):
        """The call just run recorded; its last step was `last_step`."""
        if self.on_recorded is not None:
            self.on_recorded(last_step)

    def mark_unwatchable(self, layer, reason):
        path = self.paths.get(id(layer))
        if path is not None and path not in self._unwatchable:
            self._unwatchable[path] = reason
            warnings.warn(
                f"GradWatch cannot watch layer '{path}': {reason}. "
                "Training goes on without it.",
                stacklevel=2,
            )

    def applied_steps(self):
        """How many steps the model's optimizers have applied (a host sync):
        the number of the next step."""
        return internals.steps_applied(self.model)

    def attach(self):
        """Joins the model's capture; other GradWatch on the model stay."""
        step = self.applied_steps()
        # Every GradWatch of one `fit` attaches before its first step: one
        # that attached at an earlier step belongs to an earlier fit that
        # was interrupted before it could detach.
        self._detach_stale(
            [m for m in _ModelCaptures.members_of(self.model) if m._attached_at != step]
        )
        self._attached_at = step
        self._last_step = step - 1
        self._captures = _ModelCaptures.of(self.model)
        self._captures.join(self)
        self.attached = True

    def step(self, step, record, distributions=False):
        """The step numbered `step` is next; `record` says whether we record
        it, `distributions` whether its distributions too.

        Every GradWatch of a `fit` hears of every step: one that did not
        hear of the step before this one is left over from an interrupted
        fit (it attached at the same step as this one, so `attach` could not
        tell) and is detached.
        """
        previous, self._last_step = self._last_step, step
        self._detach_stale(
            [
                m
                for m in _ModelCaptures.members_of(self.model)
                if m is not self and m._last_step < previous
            ]
        )
        self._captures.plan(self, step, record, distributions)

    def _detach_stale(self, stale):
        for instrumentation in stale:
            instrumentation.detach()
        if stale:
            warnings.warn(
                "GradWatch removed the hooks of an earlier GradWatch on this "
                "model whose fit was interrupted (an interrupted fit cannot "
                "detach them itself). Its records up to the interruption "
                "are kept.",
                stacklevel=3,
            )

    def detach(self):
        """Leaves the capture. Once every GradWatch on the model has left,
        the model is as it was before."""
        self.attached = False
        if self._captures is not None:
            self._captures.leave(self)
            self._captures = None

    def _taps(self):
        capture = self._captures.current
        if self._watched is None or self._watched[0] is not capture:
            mine = set(self.paths)
            taps = [
                t for t in capture.order
                if id(t.layer) in mine
                and self.paths[id(t.layer)] not in self._unwatchable
                and (self._keep is None or self._keep(t.layer))
            ]
            self._watched = (capture, taps)
        return self._watched[1]

    @property
    def watched(self):
        """`(path, layer, nonlinearity)` of the layers recorded, in forward
        (depth) order."""
        return [(self.paths[id(t.layer)], t.layer, t.nonlinearity) for t in self._taps()]

    def read(self, step):
        """This GradWatch's metrics at the recorded step `step`: a
        `[metrics, layers]` numpy array in `SNAPSHOT_METRICS` order."""
        capture = self._captures.current
        taps = self._taps()
        fields, activity = capture.read(step)
        index = {tap: i for i, tap in enumerate(capture.taps)}
        rows = fields[[index[t] for t in taps]]
        column = len(st.FIELDS) + capture.thresholds.index(self.saturation_threshold)
        windows = [
            self._windows.setdefault(t, np.zeros(activity[t].shape, bool))
            if t in activity else None
            for t in taps
        ]
        metrics = st.finish(
            rows[:, : len(st.FIELDS)],
            rows[:, column],
            [activity.get(t) for t in taps],
            windows,
        )
        return np.stack([metrics[name] for name in SNAPSHOT_METRICS]).reshape(
            len(SNAPSHOT_METRICS), len(taps)
        )

    def read_distributions(self, step):
        """This GradWatch's distributions at the recorded step `step`:
        `{name: [layers, width] array}` in `metadata.DISTRIBUTION_NAMES`
        order, or None if that step did not measure them."""
        capture = self._captures.current
        series = capture.read_distributions(step)
        if series is None:
            return None
        index = {tap: i for i, tap in enumerate(capture.taps)}
        rows = [index[t] for t in self._taps()]
        return {name: matrix[rows] for name, matrix in series.items()}

    def reset_windows(self):
        self._windows = {}
