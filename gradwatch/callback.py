"""The `GradWatch` Keras callback: where the statistics go, and when."""

import logging
import numbers
import os
import warnings

import keras

from gradwatch_tensorboard import metadata, storage
from gradwatch_tensorboard.summary import SummaryWriter

from . import activations, findings, hooks, init_audit, keras_internals, reader, selection

# Measured on a 20 x 256 ReLU MLP with BatchNorm (benchmarks/overhead.py):
# recording every 64th step costs within noise of plain `fit`.
DEFAULT_UPDATE_FREQ = 64
# Distributions (histograms and per-unit activity) every this many steps.
DEFAULT_HISTOGRAM_FREQ = 256


class GradWatch(keras.callbacks.Callback):
    """Records per-layer training-health statistics as TensorBoard summaries.

    On every `update_freq`-th training step, GradWatch measures each watched
    layer on the real training batch, inside the compiled train step: the
    mean and variance of its output and of dLoss/d(output), its gain, the
    saturation of its nonlinearity, its dead units, BatchNorm batch
    statistics, kernel-gradient norms, update ratios and non-finite values.
    Only a few numbers per layer leave the device. Steps in between run
    Keras' own, untouched train function.

    Read the results with `tensorboard --logdir` (GradWatch tab) or
    `gradwatch.load(log_dir)`.

    Args:
        log_dir: Directory to write the run into: a local path, or remote
            storage TensorFlow's `tf.io.gfile` reaches (`gs://`, `s3://`,
            `hdfs://`). Created if missing; it must be writable. A log dir
            holds one run: if it already holds another model's records, or
            this fit starts from step 0 over earlier records, the run goes to
            a fresh `<log_dir>-2` (-3, ...) with a warning, and `self.log_dir`
            names it.
        update_freq: Record every this many training steps (a positive int),
            and the first step of every `fit`. Steps are the optimizer's:
            step `n` is the one after which its `iterations` is `n + 1`,
            across `fit` calls. With `steps_per_execution` > 1, a call that
            covers a multiple of `update_freq` records its last step,
            labelled with its number.
        layers: Optional `fnmatch` pattern, or list of them, matched against
            layer paths (`"dense*"`, `"encoder/*"`). Nested models' layers are
            named `outer/inner`.
        layer_types: Optional layer class, or tuple of them, to watch. With
            neither `layers` nor `layer_types`, every layer with weights or a
            nonlinearity is watched; with both, layers matching both.
        saturation_threshold: A unit output counts as saturated where its
            nonlinearity's derivative is below this fraction of its maximum.
            In (0, 1); default 0.05.
        headline_scalars: Whether to also write a few scalars (worst dead
            fraction, worst saturation, backward variance ratio, non-finite
            count) to TensorBoard's Scalars dashboard.
        verbose: 0 for silence, 1 for one line when recording starts, a
            warning line when non-finite values first appear, a line when a
            warning finding (see `gradwatch.findings`) appears or changes
            (rate-limited) and a summary of the findings when `fit` ends; 2
            also prints info findings as they appear.
        thresholds: A `gradwatch.findings.Thresholds` for the findings
            checked while training (None: the defaults).
        histogram_freq: Also record each watched layer's distributions
            every this many steps (and on the first step of every `fit`):
            histograms of its output and of dLoss/d(output) in signed
            log-magnitude bins, and the activity and saturation of its first
            units (`gradwatch_tensorboard.metadata.DISTRIBUTIONS`). A
            non-negative int; 0 records none. Default 256.

    After `fit`, `self.findings` lists that `fit`'s findings; they are also
    written into `log_dir` for TensorBoard and `gradwatch.load(...)`.

    Example:

    ```python
    model.fit(x, y, epochs=20,
              callbacks=[gradwatch.GradWatch("runs/exp1")])
    # then: tensorboard --logdir runs
    ```
    """

    def __init__(
        self,
        log_dir,
        update_freq=DEFAULT_UPDATE_FREQ,
        layers=None,
        layer_types=None,
        saturation_threshold=0.05,
        headline_scalars=True,
        verbose=1,
        thresholds=None,
        histogram_freq=DEFAULT_HISTOGRAM_FREQ,
    ):
        super().__init__()
        keras_internals.require_supported_backend()
        if thresholds is not None and not isinstance(
            thresholds, findings.Thresholds
        ):
            raise TypeError(
                "Argument `thresholds` must be None or a "
                "gradwatch.findings.Thresholds. "
                f"Received: thresholds={thresholds!r}"
            )
        self.thresholds = thresholds or findings.Thresholds()
        self.findings = []
        self._live_findings = None
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise TypeError(
                "Argument `log_dir` must be a non-empty path (str or "
                f"os.PathLike). Received: log_dir={log_dir!r}"
            )
        if isinstance(update_freq, bool) or not isinstance(
            update_freq, numbers.Integral
        ):
            raise TypeError(
                "Argument `update_freq` must be a positive int (record every "
                f"N steps). Received: update_freq={update_freq!r}"
            )
        if update_freq < 1:
            raise ValueError(
                "Argument `update_freq` must be a positive int (record every "
                f"N steps). Received: update_freq={update_freq}"
            )
        allowed = (
            "Argument `histogram_freq` must be a non-negative int (record "
            "distributions every N steps; 0 for none). Received: "
            f"histogram_freq={histogram_freq!r}"
        )
        if isinstance(histogram_freq, bool) or not isinstance(
            histogram_freq, numbers.Integral
        ):
            raise TypeError(allowed)
        if histogram_freq < 0:
            raise ValueError(allowed)
        self.log_dir = os.fspath(log_dir)
        self.update_freq = int(update_freq)
        self.histogram_freq = int(histogram_freq)
        self.layer_patterns = _validate_patterns(layers)
        self.layer_types = _validate_types(layer_types)
        if isinstance(saturation_threshold, bool) or not isinstance(
            saturation_threshold, numbers.Real
        ):
            raise TypeError(
                "Argument `saturation_threshold` must be a float in (0, 1). "
                f"Received: saturation_threshold={saturation_threshold!r}"
            )
        if not 0.0 < float(saturation_threshold) < 1.0:
            raise ValueError(
                "Argument `saturation_threshold` must be in (0, 1). "
                f"Received: saturation_threshold={saturation_threshold}"
            )
        self.saturation_threshold = float(saturation_threshold)
        if not isinstance(headline_scalars, bool):
            raise TypeError(
                "Argument `headline_scalars` must be True or False. "
                f"Received: headline_scalars={headline_scalars!r}"
            )
        self.headline_scalars = headline_scalars
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(
                f"Argument `verbose` must be 0, 1 or 2. Received: verbose={verbose!r}"
            )
        self.verbose = verbose
        self._instrumentation = None
        self._writer = None
        self._pending_audit = None
        self._next_step = 0
        self._steps_per_call = 1
        self._recording = None  # The first step of a call that records.
        self._last_written = None
        self._first_call = True
        self._run_of = (None, None)  # the model and optimizer `log_dir` was checked for
        self.first_nonfinite = None

    # -- fit lifecycle --------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "GradWatch needs a compiled model: call `model.compile(...)` "
                "before `fit`."
            )
        chief = hooks.Replicas.of(model).is_chief
        if chief:
            _check_writable(self.log_dir)
        previous = self._instrumentation
        if previous is None or previous.model is not model or previous.optimizer is not model.optimizer:
            self._instrumentation = self._instrument(model)
            self._last_written = None
        # else: the same model and optimizer as the last fit, whose traced
        # instrumented step is reused.
        ordered = self._instrumentation.selection
        start = self._instrumentation.applied_steps()
        # Once per model and optimizer: a loop of `fit` calls does not reread
        # the log dir; a recompiled model (steps from 0 again) does.
        checked_model, checked_optimizer = self._run_of
        if chief and (
            checked_model is not model or checked_optimizer is not model.optimizer
        ):
            self.log_dir = self._run_dir([p for p, _, _ in ordered], start)
            self._run_of = (model, model.optimizer)
        self._instrumentation.on_recorded = self._write_recorded
        self._instrumentation.attach()
        # A subclassed model's layers are built by its first step: audit them
        # then, on the weights that step started from as nearly as we can.
        built = all(layer.built for _, layer, _ in ordered)
        self._pending_audit = init_audit.audit(ordered, model) if built else None
        self._next_step = start
        self._first_call = True
        self._writer = None
        self._steps_per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

    def _run_dir(self, layers, start):
        """`self.log_dir`, unless it holds another run: then a fresh sibling.

        A log dir holds one run. Its records continue when every layer they
        name is among this fit's and this fit starts after step 0 (a further
        `fit`, `initial_epoch`, `BackupAndRestore`: a step recorded again
        replaces the earlier record). Records of other layers, or a fit from
        step 0 over earlier records (a notebook cell run again), are another
        run: it goes to `<log_dir>-2` (or -3, ...), with a warning.
        """
        existing = reader.describe(self.log_dir)
        if existing is None:
            return self.log_dir  # no GradWatch records there yet
        existing_layers, first_step, last_step = existing
        other_layers = sorted(set(existing_layers) - set(layers))
        if not other_layers and start > 0:
            return self.log_dir
        base = _sibling_base(self.log_dir)
        number = 2
        while storage.exists(f"{base}-{number}"):
            number += 1
        fresh = f"{base}-{number}"
        _check_writable(fresh)
        shown = ", ".join(existing_layers[:4])
        if len(existing_layers) > 4:
            shown += ", ..."
        why = (
            f"other layers ({', '.join(other_layers[:4])}"
            f"{', ...' if len(other_layers) > 4 else ''} are not in this model)"
            if other_layers
            else "this fit starts again from step 0"
        )
        warnings.warn(
            f"GradWatch: log_dir={self.log_dir!r} already holds a run of "
            f"{len(existing_layers)} layers ({shown}) at steps "
            f"{first_step}-{last_step}, and {why}. This run is written to "
            f"{fresh!r} instead, so neither replaces the other; pass a new "
            "log_dir to choose its name.",
            stacklevel=2,
        )
        return fresh

    def _instrument(self, model):
        selected = selection.select_layers(
            model, self.layer_patterns, self.layer_types
        )
        if not selected:
            raise ValueError(
                "GradWatch found no layer to watch with "
                f"layers={self.layer_patterns!r}, "
                f"layer_types={self.layer_types!r}. Layer paths: "
                f"{[p for p, _ in selection.leaf_layers(model)]}"
            )
        by_default = self.layer_patterns is None and self.layer_types is None
        return hooks.Instrumentation(
            model,
            [(p, l, activations.of_layer(l)) for p, l in selected],
            self.saturation_threshold,
            keep=selection.is_watched_by_default if by_default else None,
            distributions=bool(self.histogram_freq),
        )

    def on_epoch_begin(self, epoch, logs=None):
        if self._instrumentation is not None:
            self._instrumentation.reset_windows()
        if self._attached():
            # An epoch's last call may run fewer steps than
            # `steps_per_execution`, or more than `steps_per_epoch` asked
            # for: count on from the optimizer (one sync per epoch).
            self._next_step = self._instrumentation.applied_steps()

    def _attached(self):
        # A later GradWatch detaches one left over from an interrupted fit.
        return self._instrumentation is not None and self._instrumentation.attached

    def on_train_batch_begin(self, batch, logs=None):
        if not self._attached():
            return
        first = self._next_step
        steps = self._steps_per_call
        in_epoch = self.params.get("steps") if self.params else None
        if in_epoch:  # The epoch's last call runs what is left of it.
            steps = max(1, min(steps, in_epoch - batch))
        self._next_step += steps
        # Record when this call covers a multiple of update_freq (and its
        # distributions, of histogram_freq); the call measures its last
        # step. The first call of every fit records both, so that no fit,
        # however short, leaves nothing.

        def covers(freq):
            return (first + steps - 1) // freq * freq >= first

        distributions = bool(self.histogram_freq) and (
            self._first_call or covers(self.histogram_freq)
        )
        record = self._first_call or covers(self.update_freq) or distributions
        self._first_call = False
        self._recording = first if record else None
        self._instrumentation.step(first, record, distributions)

    def _write_recorded(self, last_step):
        # Called by the model's train function right after a recorded call,
        # with the optimizer's number for the call's last step (no
        # on_train_batch_end: see hooks._ModelCaptures._run).
        if self._recording is None:
            return
        # Steps a loss scaler skipped do not advance the optimizer: such a
        # step is numbered on from the call's first and the last record, so
        # that no record replaces another.
        last_step = max(last_step, self._recording)
        if self._last_written is not None:
            last_step = max(last_step, self._last_written + 1)
        self._recording = None
        self._last_written = last_step
        self._next_step = last_step + 1
        self._write(last_step)

    def on_train_end(self, logs=None):
        if self._instrumentation is not None:
            # Kept, detached, for the next fit of the same model.
            self._instrumentation.detach()
        if self._live_findings is not None:
            if self._writer is not None:
                self.findings = self._live_findings.finish(self._writer)
            self._live_findings = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- writing --------------------------------------------------------------

    def _write(self, step):
        instrumentation = self._instrumentation
        if not instrumentation.replicas.is_chief:
            return  # Other workers of a multi-worker job write nothing.
        watched = instrumentation.watched
        if not watched:
            return
        values = instrumentation.read(step)
        layer_names = [path for path, _, _ in watched]
        if self._writer is None:
            self._writer = SummaryWriter(self.log_dir, layer_names)
            if self.verbose:
                _say(
                    f"GradWatch: watching {len(layer_names)} layers every "
                    f"{self.update_freq} steps -> {self.log_dir}"
                )
            audit = self._pending_audit
            if audit is None and not _stateless_backend():
                # (On JAX, Keras builds every layer before `on_train_begin`,
                # which audited them: the model's state is not to be read
                # from inside its train function.)
                audit = init_audit.audit(watched, self.model)
            if audit:
                self._writer.write_document(step, metadata.INIT_AUDIT_TAG, audit)
            self._pending_audit = None
            self._live_findings = findings.LiveFindings(
                self.log_dir, layer_names, audit, self.thresholds, self.verbose,
                say=_say, first_nonfinite=self.first_nonfinite,
            )
        layer_metrics = dict(zip(hooks.SNAPSHOT_METRICS, values))
        live = self._live_findings
        live.record(step, layer_metrics, self._writer)
        self.first_nonfinite = live.first_nonfinite
        scalars = live.headline(layer_metrics) if self.headline_scalars else None
        self._writer.write_step(step, layer_metrics, scalars)
        series = instrumentation.read_distributions(step)
        if series is not None:
            self._writer.write_distributions(step, series)


def _stateless_backend():
    """Whether the model's state lives in the train step's arguments (JAX),
    where reading `self.model` mid-epoch syncs it back to the variables."""
    return keras.backend.backend() == "jax"


def _validate_patterns(layers):
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers or not all(
        isinstance(p, str) and p for p in layers
    ):
        raise TypeError(
            "Argument `layers` must be None, a name pattern (str) or a "
            f"non-empty list of them. Received: layers={layers!r}"
        )
    return list(layers)


def _validate_types(layer_types):
    if layer_types is None:
        return None
    if isinstance(layer_types, type):
        layer_types = (layer_types,)
    if (
        not isinstance(layer_types, (list, tuple))
        or not layer_types
        or not all(
            isinstance(t, type) and issubclass(t, keras.layers.Layer)
            for t in layer_types
        )
    ):
        raise TypeError(
            "Argument `layer_types` must be None, a keras.layers.Layer "
            "subclass or a non-empty tuple of them. "
            f"Received: layer_types={layer_types!r}"
        )
    return tuple(layer_types)


def _check_writable(log_dir):
    try:
        storage.check_writable(log_dir)
    except OSError as e:
        raise ValueError(
            f"GradWatch cannot write to log_dir={log_dir!r}: {e}"
        ) from e


def _sibling_base(log_dir):
    """`log_dir` as the stem of a sibling's name (`runs/a/` -> `runs/a`)."""
    if storage.is_remote(log_dir):
        return log_dir.rstrip("/")
    base = os.path.normpath(log_dir)
    if os.path.basename(base) in ("", os.curdir, os.pardir):
        base = os.path.abspath(base)
    return base


def _say(message):
    """Prints a line the way Keras prints its own: on stdout while Keras'
    interactive logging is on (the default), else to the `gradwatch` logger
    (`keras.config.disable_interactive_logging()`)."""
    if keras.config.is_interactive_logging_enabled():
        print(message, flush=True)
    else:
        logging.getLogger("gradwatch").info(message)
