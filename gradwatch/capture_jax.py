"""The JAX capture: Keras' train step made again with taps, run on the
recorded steps only; Keras' own compiled step runs the others.

JAX's train step is a pure function, so nothing is stored on the device:

- each watched layer's output passes through an identity with a custom
  VJP, whose backward pass receives dLoss/d(output) and, as residuals, the
  layer's input and output (and BatchNorm's moving statistics before the
  call). The forward pass runs inside `jax.value_and_grad`, whose values
  cannot outlive it; the backward pass's can, so the taps' tensors are
  taken there;
- the optimizer's `stateless_apply` hands over the kernels' gradients, and
  the step's input and output states give the kernels before and after the
  update;
- after Keras' step the same `measure.Measure` as on TensorFlow packs every
  statistic into one vector, which leaves the step among its logs (with
  the optimizer's step count) and is taken out of them again before `fit`
  sees them.

Under `keras.distribution.DataParallel` the step is one program over global
arrays, so every reduction is over the global batch already.
"""

import jax
import numpy as np

from . import keras_internals as internals
from .capture import Capture
from .taps import Trace

# The logs' keys that carry the numbers out of the step.
PACKED_KEY = "_gradwatch_packed"
STEP_KEY = "_gradwatch_step"
DISTRIBUTIONS_KEY = "_gradwatch_distributions"


class JaxCapture(Capture):
    """A `Capture` on Keras' JAX backend (see `capture.Capture`)."""

    def __init__(self, model, keras_function, watched, thresholds, distributions=True,
                 initial=None):
        super().__init__(model, keras_function, watched, thresholds, distributions, initial)
        self._layout = self._known_sizes()
        self._packed = None
        self._packed_distributions = None
        # Made now, while the model's variables hold their values: made in
        # the middle of `fit`, a distributed step's shardings could not be
        # read from them. Compiled on first use.
        for with_distributions in {False, distributions}:
            self.recording_function(with_distributions)

    # -- the taps' backend ---------------------------------------------------

    def copy_of(self, variable):
        # A new buffer: Keras donates the step's state, so the variable's
        # own buffer is gone after the next step. Closed over by the
        # recording function, it is passed to it as an argument, not baked in.
        copy = jax.numpy.array(variable.value, copy=True)
        value = np.asarray(copy, np.float64)
        return copy, float(np.sum(value * value))

    @property
    def optimizer_method(self):
        return "stateless_apply", _stateless_apply_with_taps

    def hand_over(self, trace, tap, call):
        # Until the backward pass says otherwise, the call keeps its forward
        # values: those of a layer that no trainable weight reaches (an
        # activation of the input) are not differentiated, so they belong to
        # the step itself, and no backward pass comes for them. (Those of a
        # branch no loss reads are differentiated but get no backward pass:
        # `_drop_leaked` drops them.)
        trace.calls.setdefault(tap, []).append(call)

        @jax.custom_vjp
        def identity(y, residuals):
            return y

        def forward(y, residuals):
            return y, (y, residuals)

        def backward(saved, dy):
            # The forward values inside `value_and_grad` cannot outlive it:
            # the residuals, which are the same values, can.
            call.y, (call.x, call.moving_before) = saved
            call.gradients.append(dy)
            return dy, jax.tree.map(jax.numpy.zeros_like, saved[1])

        identity.defvjp(forward, backward)
        return identity(call.y, (call.x, call.moving_before))

    # -- tracing ---------------------------------------------------------------

    def _make_function(self, distributions):
        """Keras' train function, made again around our train step, for
        recorded calls: with the distributions, or without."""
        model = self.model
        keras_train_step = model.train_step

        def train_step(state, data):
            Capture.traces += 1
            self.tracing = trace = Trace()
            try:
                logs, new_state = keras_train_step(state, data)
            finally:
                self.tracing = None
            self._report_elsewhere(trace)
            _drop_leaked(trace, jax.tree.leaves(data)[0])
            if self._layout is None:
                self._layout = self._sizes_seen(trace)
            trainable, non_trainable, optimizer_values = new_state[:3]
            before = {id(v): x for v, x in zip(model.trainable_variables, state[0])}
            after = {id(v): x for v, x in zip(model.trainable_variables, trainable)}
            after.update(
                (id(v), x) for v, x in zip(model.non_trainable_variables, non_trainable)
            )
            kernels = self.kernels
            packed = self._measure(
                trace, kernels, [before[id(k)] for k in kernels], lambda v: after[id(v)]
            )
            logs = dict(logs)
            logs[PACKED_KEY] = packed
            logs[STEP_KEY] = internals.iterations_in(model.optimizer, optimizer_values)
            if distributions:
                logs[DISTRIBUTIONS_KEY] = self._measure_distributions(trace)
            return logs, new_state

        return internals.make_train_function(model, train_step)

    # -- after a call ----------------------------------------------------------

    def _finish_call(self, outputs, recorded):
        logs, state = outputs
        if PACKED_KEY not in logs:
            return outputs, None
        logs = dict(logs)
        self._packed = logs.pop(PACKED_KEY)
        step = logs.pop(STEP_KEY)
        if DISTRIBUTIONS_KEY in logs:
            self._packed_distributions = logs.pop(DISTRIBUTIONS_KEY)
        # The optimizer's count after the call: its last step is one less.
        return (logs, state), int(step) - 1 if recorded else None

    def packed(self):
        return np.asarray(self._packed, np.float32)

    def packed_distributions(self):
        return np.asarray(self._packed_distributions, np.float32)


def _drop_leaked(trace, reference):
    """Drops the calls whose backward pass never came although their values
    were differentiated (a branch no loss reads): their forward values
    belong to the finished gradient transform, and any use fails.

    Args:
        trace: The step's `Trace`.
        reference: A value of the step itself (one of its arguments).
    """
    for tap, calls in list(trace.calls.items()):
        alive = [c for c in calls if c.gradients or _of_step(c.y, reference)]
        if alive:
            trace.calls[tap] = alive
        else:
            del trace.calls[tap]


def _of_step(value, reference):
    """Whether `value` belongs to the step's own trace, as `reference` does
    (or is concrete, where the step runs eagerly). A tracer's `_trace` is a
    JAX internal, checked by tests/test_keras_contract.py."""
    if not isinstance(value, jax.core.Tracer):
        return True
    return value._trace is getattr(reference, "_trace", None)


def _stateless_apply_with_taps(original, taps, args, kwargs):
    """`optimizer.stateless_apply(optimizer_variables, grads,
    trainable_variables)`, seen by each tap: the values are in the order of
    the variables the optimizer was built for."""
    names = ("optimizer_variables", "grads", "trainable_variables")
    bound = dict(zip(names, args), **kwargs)
    for tap in taps:
        optimizer = tap.optimizer
        tap.before_apply(
            list(bound["grads"]),
            internals.built_for(optimizer),
            scale=internals.loss_scale_in(optimizer, bound["optimizer_variables"]),
        )
    return original(*args, **kwargs)
