"""A recording as a table: one row per run, metric, layer and step.

`Recording.to_records()` needs only NumPy; `Recording.to_frame()` returns the
same rows as a pandas DataFrame (pandas is optional: `pip install pandas`, or
`pip install gradwatch[pandas]`). The tab's "Download CSV" writes the same
columns, plus `first_step` for merged columns.
"""

import os

import numpy as np

COLUMNS = ("run", "metric", "layer", "step", "value")


def run_name(log_dir):
    """The run's name: the last component of its log directory."""
    return os.path.basename(os.path.normpath(os.fspath(log_dir)))


def chosen_metrics(recording, metrics):
    """The metric names asked for, checked against the recording.

    Args:
        recording: A `gradwatch.Recording`.
        metrics: None (every metric), one name, or a list of names.

    Returns:
        A list of names, in the recording's metric order.
    """
    if metrics is None:
        return list(recording.metrics)
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        wanted = list(metrics)
    except TypeError:
        raise TypeError(
            f"`metrics` must be None, a metric name or a list of names, "
            f"got {type(metrics).__name__}"
        ) from None
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(
                f"`metrics` must hold metric names (str), got {name!r}"
            )
        if name not in recording.metrics:
            raise ValueError(
                f"`metrics` names {name!r}, which {recording.log_dir!r} did "
                f"not record; it has {recording.metrics}"
            )
    return [m for m in recording.metrics if m in wanted]


def _columns(recording, metrics, run):
    """The five columns as flat arrays, rows ordered metric, layer, step."""
    names = chosen_metrics(recording, metrics)
    run = run_name(recording.log_dir) if run is None else run
    if not isinstance(run, str):
        raise TypeError(f"`run` must be a str or None, got {type(run).__name__}")
    n_steps, n_layers = len(recording.steps), len(recording.layers)
    per_metric = n_steps * n_layers
    # metric(m) is [steps, layers]; its transpose, flattened, runs through
    # each layer's steps in turn.
    values = np.concatenate(
        [recording.metric(m).T.reshape(-1) for m in names]
    ) if names else np.zeros(0)
    return {
        "run": run,
        "metric_index": np.repeat(np.arange(len(names)), per_metric),
        "metric_names": names,
        "layer_index": np.tile(np.repeat(np.arange(n_layers), n_steps), len(names)),
        "step": np.tile(recording.steps, n_layers * len(names)),
        "value": values,
    }


def to_records(recording, metrics=None, run=None):
    """The recording as a NumPy structured array (no pandas needed).

    Args:
        recording: A `gradwatch.Recording`.
        metrics: None (every metric), one name, or a list of names.
        run: The `run` column's value; default: the log directory's name.

    Returns:
        A structured array with fields `run`, `metric`, `layer` (str),
        `step` (int64) and `value` (float64, NaN where the metric does not
        apply to the layer or the layer was not recorded at that step), one
        row per metric, layer and step, in that order (layers in depth
        order).

    Example:

    >>> rows = gradwatch.load("runs/exp1").to_records("dead_fraction")
    >>> rows[rows["layer"] == "dense_3"]["value"].max()
    """
    cols = _columns(recording, metrics, run)
    metric_names = np.array(cols["metric_names"] or [""], dtype=str)
    layer_names = np.array(recording.layers or [""], dtype=str)
    n = len(cols["value"])
    out = np.empty(n, dtype=[
        ("run", f"U{max(1, len(cols['run']))}"),
        ("metric", metric_names.dtype),
        ("layer", layer_names.dtype),
        ("step", np.int64),
        ("value", np.float64),
    ])
    out["run"] = cols["run"]
    out["metric"] = metric_names[cols["metric_index"]]
    out["layer"] = layer_names[cols["layer_index"]]
    out["step"] = cols["step"]
    out["value"] = cols["value"]
    return out


def to_frame(recording, metrics=None, run=None):
    """The recording as a long pandas DataFrame.

    Args:
        recording: A `gradwatch.Recording`.
        metrics: None (every metric), one name, or a list of names.
        run: The `run` column's value; default: the log directory's name.

    Returns:
        A DataFrame with columns `run`, `metric`, `layer`, `step`, `value`,
        rows as in `to_records`. `metric` and `layer` are ordered
        categoricals (metric menu order, depth order), so sorting and
        grouping keep the network's order.

    Raises:
        ImportError: if pandas is not installed.

    Example:

    >>> df = gradwatch.load("runs/exp1").to_frame(["gradient_var"])
    >>> df.pivot(index="layer", columns="step", values="value")
    """
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(
            "Recording.to_frame() needs pandas: `pip install pandas` "
            "(or `pip install gradwatch[pandas]`). "
            "Recording.to_records() gives the same rows with NumPy alone."
        ) from err
    cols = _columns(recording, metrics, run)
    return pd.DataFrame({
        "run": np.full(len(cols["value"]), cols["run"], dtype=object),
        "metric": pd.Categorical.from_codes(
            cols["metric_index"], categories=cols["metric_names"], ordered=True
        ),
        "layer": pd.Categorical.from_codes(
            cols["layer_index"], categories=list(recording.layers), ordered=True
        ),
        "step": cols["step"],
        "value": cols["value"],
    }, columns=list(COLUMNS))
