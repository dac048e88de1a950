"""Every Keras internal that GradWatch relies on, in one place.

GradWatch captures the real training step, which no public Keras API
offers. What it needs from Keras is gathered here, each with the version it
has held since; `tests/test_keras_contract.py` checks each against the
installed Keras, so an upgrade that changes one fails there, by name, rather
than as a wrong number somewhere else.

- `make_train_function(force=True)` binds the model's `train_step` as it
  finds it then, so an instance attribute of that name is the step traced
  (Keras 3.7 and later).
- `Layer.__call__` runs `self.call`, and a train step calls
  `optimizer.apply(grads, trainable_variables)`: an instance attribute of
  either name is what runs (`replace_method`).
- `fit` calls `model.train_function(iterator)` once per execution, looking
  it up on every call, and calls `on_train_batch_begin` with the step's
  index in the epoch.
- A functional model's graph: an output tensor's `_keras_history.operation`
  is the layer that made it, and `layer._outbound_nodes` are the calls that
  read the layer's output (`output_layers`, `consumers_of`).
- `LossScaleOptimizer` keeps its scale in `dynamic_scale` (before it is
  built, `initial_scale`) and wraps `inner_optimizer`, which counts the
  steps applied.
- On JAX, `fit` calls `model.train_function(state, iterator)`, and the train
  step is `train_step(state, data) -> (logs, state)`, whose state is the
  values of `trainable_variables`, `non_trainable_variables`,
  `optimizer.variables` and `metrics_variables`, in their orders; the step
  calls `optimizer.stateless_apply(optimizer_variables, grads,
  trainable_variables)`, whose values follow `optimizer._trainable_variables`
  (`built_for`).
"""

import keras
import numpy as np

# The Keras versions GradWatch is tested with (setup.py declares the same).
OLDEST_KERAS = "3.7"


# The backends whose train step GradWatch captures.
BACKENDS = ("tensorflow", "jax")


def require_supported_backend():
    """Raises when Keras runs on a backend GradWatch cannot capture yet.

    Raises:
        RuntimeError: On Keras' PyTorch or NumPy backend.
    """
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise RuntimeError(
            "GradWatch records on Keras' TensorFlow and JAX backends; this "
            f"Keras runs on the {backend!r} backend (KERAS_BACKEND={backend}). "
            "Set KERAS_BACKEND=tensorflow or jax to use GradWatch (README, "
            "'Backends', says what blocks PyTorch)."
        )


def replace_method(target, name, function):
    """Sets `target.<name>` to `function` for this instance only.

    `object.__setattr__` bypasses `Layer.__setattr__`, which would track the
    function as state to save.
    """
    object.__setattr__(target, name, function)


def restore_method(target, name, saved=None):
    """Undoes `replace_method`: the instance attribute `saved`, or none."""
    if saved is None:
        object.__delattr__(target, name)
    else:
        object.__setattr__(target, name, saved)


def make_train_function(model, train_step):
    """Keras' train function for `model`, made around `train_step`.

    The model keeps its own `train_step` and `train_function`; only the
    returned function runs `train_step` (traced as Keras traces its own,
    with the same distribution, `steps_per_execution` and `jit_compile`).

    Args:
        model: A compiled `keras.Model`.
        train_step: `train_step(data) -> logs`.
    """
    replace_method(model, "train_step", train_step)
    saved = model.train_function
    try:
        model.make_train_function(force=True)
        return model.train_function
    finally:
        restore_method(model, "train_step")
        model.train_function = saved


def train_function(model):
    """The function `fit` calls next, made if Keras has not made it yet."""
    function = model.train_function
    if function is None:
        function = model.make_train_function() or model.train_function
    return function


def set_train_function(model, function):
    """What `fit` calls for the next execution (it looks it up each time)."""
    model.train_function = function


def optimizers_of(model):
    """The optimizers that may apply gradients in `model`'s train step:
    `model.optimizer` and any optimizer the model holds as an attribute (a
    GAN's `d_optimizer` and `g_optimizer`, in the shape of the keras-io
    example)."""
    found = []
    candidates = [getattr(model, "optimizer", None)] + list(vars(model).values())
    for value in candidates:
        if isinstance(value, keras.optimizers.Optimizer) and all(
            value is not f for f in found
        ):
            found.append(value)
    return found


def build_optimizer(model):
    """Builds `model.optimizer` for the model's weights now, as Keras' own
    symbolic build does, so that the traced step does not create its
    variables (which makes tf.function trace the whole step twice)."""
    optimizer, variables = model.optimizer, model.trainable_variables
    if optimizer is None or optimizer.built or not variables:
        return
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow's
    if strategy is None:
        optimizer.build(variables)
        return
    with strategy.scope():
        optimizer.build(variables)


def loss_scale(optimizer):
    """The scale a `LossScaleOptimizer` multiplies the loss by, as a tensor
    (None for other optimizers), read as Keras' own `scale_loss` reads it."""
    if getattr(optimizer, "inner_optimizer", None) is None:
        return None
    return optimizer.dynamic_scale if optimizer.built else optimizer.initial_scale


def steps_applied(model):
    """How many steps the model's optimizers have applied (a host sync): the
    most any of them has, so that a model training with optimizers of its
    own (a GAN's two, which both step every step) is counted too."""
    return max(iterations(o) for o in optimizers_of(model))


def iterations(optimizer):
    """How many steps `optimizer` has applied (a host sync).

    A `LossScaleOptimizer` counts in its inner optimizer (its own
    `iterations` stays at 0 before Keras 3.8 or so).
    """
    return int(host_value(_counter(optimizer)))


def host_value(variable):
    """A `keras.Variable`'s value as a NumPy array (a host sync).

    Through the backend's own tensor: NumPy 2 warns at Keras' own
    `Variable.__array__` (it takes no `copy` argument), where `numpy()` and
    `convert_to_numpy` end up.
    """
    value = variable.value
    if hasattr(value, "numpy"):  # TensorFlow
        return value.numpy()
    return np.asarray(value)  # JAX


def _counter(optimizer):
    return (getattr(optimizer, "inner_optimizer", None) or optimizer).iterations


def _value_in(optimizer, values, variable):
    """`variable`'s entry of `values`, the values of `optimizer.variables`."""
    for candidate, value in zip(optimizer.variables, values):
        if candidate is variable:
            return value
    raise ValueError(f"{variable.path} is not among the optimizer's variables")


def iterations_in(optimizer, values):
    """How many steps `optimizer` has applied, in `values` (the values of
    `optimizer.variables`, as a JAX train step carries them)."""
    return _value_in(optimizer, values, _counter(optimizer))


def loss_scale_in(optimizer, values):
    """A `LossScaleOptimizer`'s scale in `values` (the values of its
    `variables`), as float32; None for other optimizers."""
    if getattr(optimizer, "inner_optimizer", None) is None:
        return None
    return keras.ops.cast(_value_in(optimizer, values, optimizer.dynamic_scale), "float32")


def built_for(optimizer):
    """The variables `optimizer` was built for, in the order of the values
    `stateless_apply` takes."""
    return list(optimizer._trainable_variables)


def output_layers(model):
    """The layers whose outputs are `model`'s outputs (empty for a model
    without a graph: a subclassed one)."""
    found = []
    for tensor in getattr(model, "outputs", None) or []:
        history = getattr(tensor, "_keras_history", None)
        if history is not None:
            found.append(history.operation)
    return found


def consumers_of(layer):
    """The layers (or operations) that read `layer`'s output in the models'
    graphs; empty when no graph says (a subclassed model)."""
    return [node.operation for node in getattr(layer, "_outbound_nodes", None) or []]
