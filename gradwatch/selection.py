"""Which layers GradWatch watches, and the names it gives them."""

import fnmatch

import keras

from . import activations


def leaf_layers(model):
    """Every leaf layer of `model` in its own order, with a path name.

    Nested models are entered, and their layers are named `outer/inner`
    (the top model's own name is left out). Any other layer, even one with
    sublayers of its own, counts as one leaf. A layer shared by several
    places is listed once.

    Args:
        model: A `keras.Model`.

    Returns:
        A list of `(path, layer)` pairs.
    """
    found, seen = [], set()

    def visit(container, prefix):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, keras.Model):
                visit(layer, prefix + layer.name + "/")
            else:
                found.append((prefix + layer.name, layer))

    visit(model, "")
    return found


def is_watched_by_default(layer):
    """Layers with weights or a nonlinearity are watched by default.

    A layer not built yet (a subclassed model's, before its first step) may
    still get weights: it counts as watched until it is built.
    """
    if isinstance(layer, keras.layers.InputLayer):
        return False
    if not layer.built or layer.weights or activations.is_activation_layer(layer):
        return True
    nonlinearity = activations.of_layer(layer)
    return nonlinearity is None or nonlinearity is not activations.LINEAR


def select_layers(model, patterns=None, layer_types=None):
    """The leaf layers to watch.

    Args:
        model: A `keras.Model`.
        patterns: None, or a list of `fnmatch` patterns matched against each
            layer's path (`"dense*"`, `"encoder/*"`); a layer matching any of
            them is watched.
        layer_types: None, or a tuple of layer classes; a layer of any of them
            is watched.

    Returns:
        A list of `(path, layer)` pairs. With neither argument, every layer
        with weights or a nonlinearity. With both, layers matching both.
    """
    chosen = []
    for path, layer in leaf_layers(model):
        if patterns is None and layer_types is None:
            keep = is_watched_by_default(layer)
        else:
            keep = (
                patterns is None
                or any(fnmatch.fnmatchcase(path, p) for p in patterns)
            ) and (layer_types is None or isinstance(layer, layer_types))
        if keep:
            chosen.append((path, layer))
    return chosen
