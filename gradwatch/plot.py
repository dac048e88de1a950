"""A recording drawn with matplotlib: the layer x step heatmap and the depth
profile, as the TensorBoard tab draws them (`Recording.plot`).

matplotlib is optional (`pip install matplotlib`). The colour scales are the
tab's: viridis for sequential metrics, and a blue-orange diverging map for
metrics centred on 0 or on 1. Both stay distinct for the common forms of
colour blindness (viridis is perceptually uniform; blue and orange differ for
protanopes, deuteranopes and tritanopes, and both ends are darker than the
light centre).
"""

import numpy as np

from gradwatch_tensorboard import metadata

from .export import run_name

# The tab's diverging stops (tensorboard_plugin/static/colors.js): blue, a
# light neutral centre, orange.
BLUE_ORANGE = ("#08519c", "#3182bd", "#6baed6", "#c6dbef", "#f7f7f7",
               "#fdd0a2", "#fd8d3c", "#e6550d", "#a63603")
NAN_COLOR = "#d9d9d9"  # no value: the metric does not apply to the layer
INF_COLOR = "#ff00ff"  # +-Infinity: outside both colour maps
MAX_LAYER_LABELS = 40


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib import colors, figure
    except ImportError as err:
        raise ImportError(
            "Recording.plot() needs matplotlib: `pip install matplotlib` "
            "(or `pip install gradwatch[plot]`)."
        ) from err
    return colors, figure


def color_scale(kind, values):
    """The colour map and norm the tab uses for a metric of scale `kind`.

    Args:
        kind: `"log"`, `"ratio"`, `"signed"`, `"fraction"` or `"count"`
            (`MetricInfo.scale`); anything else is linear over the values.
        values: Every value the scale must cover (NaN and +-Inf ignored).

    Returns:
        `(cmap, norm)` for matplotlib.
    """
    colors, _ = _matplotlib()
    import matplotlib

    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    sequential = matplotlib.colormaps["viridis"]
    diverging = colors.LinearSegmentedColormap.from_list("gradwatch_blue_orange", BLUE_ORANGE)
    if kind == "log":
        positive = finite[finite > 0]
        lo, hi = (positive.min(), positive.max()) if positive.size else (0.1, 10.0)
        if hi / lo < 1 + 1e-6:
            lo, hi = lo / np.sqrt(10), hi * np.sqrt(10)
        return sequential, colors.LogNorm(lo, hi, clip=True)
    if kind == "ratio":
        positive = finite[finite > 0]
        m = max(np.abs(np.log10(positive)).max() if positive.size else 0.0, 0.02)
        return diverging, colors.LogNorm(10.0 ** -m, 10.0 ** m, clip=True)
    if kind == "signed":
        m = np.abs(finite).max() if finite.size else 0.0
        m = m if m > 0 else 1.0
        return diverging, colors.Normalize(-m, m)
    if kind == "fraction":
        return sequential, colors.Normalize(0.0, 1.0)
    if kind == "count":
        return sequential, colors.Normalize(0.0, max(1.0, finite.max() if finite.size else 1.0))
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return sequential, colors.Normalize(lo, hi)


def step_edges(steps):
    """Column edges for steps at their real positions: column c spans
    [steps[c], steps[c + 1]); the last gets the typical width."""
    steps = np.asarray(steps, np.float64)
    if steps.size == 0:
        return np.array([0.0, 1.0])
    typical = max(1.0, (steps[-1] - steps[0]) / (steps.size - 1)) if steps.size > 1 else 1.0
    return np.append(steps, steps[-1] + typical)


def plot(recording, metric, step=None, figsize=None):
    """Draws one metric: layers x steps, and its depth profile at one step.

    Args:
        recording: A `gradwatch.Recording`.
        metric: A name from `recording.metrics`.
        step: The recorded step of the depth profile; default the last.
        figsize: matplotlib's `(width, height)` in inches; default from the
            number of layers.

    Returns:
        A `matplotlib.figure.Figure` with two axes: the heatmap (rows are
        layers in depth order, top first; columns are recorded steps at
        their real positions; NaN grey, +-Inf magenta) and the profile.
        In Jupyter it displays itself; elsewhere call `fig.savefig(path)`.

    Raises:
        ImportError: if matplotlib is not installed.

    Example:

    >>> fig = gradwatch.load("runs/exp1").plot("gradient_var")
    >>> fig.savefig("gradient_var.png")
    """
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a metric name (str), got {type(metric).__name__}")
    if metric not in recording.metrics:
        raise ValueError(
            f"`metric` {metric!r} was not recorded in {recording.log_dir!r}; "
            f"it has {recording.metrics}"
        )
    steps = recording.steps
    if len(steps) == 0:
        raise ValueError(f"{recording.log_dir!r} has no recorded steps to plot")
    if step is None:
        row = len(steps) - 1
    else:
        matches = np.flatnonzero(steps == step) if isinstance(step, (int, np.integer)) else []
        if not len(matches):
            raise ValueError(
                f"`step` must be a recorded step of {recording.log_dir!r} "
                f"(an int from {int(steps[0])} to {int(steps[-1])}), got {step!r}"
            )
        row = int(matches[0])
    colors, figure = _matplotlib()
    info = metadata.METRICS.get(metric)
    label = info.label if info else metric
    kind = info.scale if info else "signed"
    values = recording.metric(metric).T  # [layers, steps]
    layers = recording.layers
    cmap, norm = color_scale(kind, values)
    cmap = cmap.with_extremes(bad=NAN_COLOR)

    if figsize is None:
        figsize = (11.0, min(12.0, 2.0 + 0.22 * len(layers)))
    fig = figure.Figure(figsize=figsize, layout="constrained")
    heat_ax, profile_ax = fig.subplots(
        1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]}
    )
    x = step_edges(steps)
    y = np.arange(len(layers) + 1) - 0.5
    mesh = heat_ax.pcolormesh(x, y, np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    infinite = np.isinf(values)
    if infinite.any():
        heat_ax.pcolormesh(
            x, y, np.ma.masked_where(~infinite, np.ones_like(values)),
            cmap=colors.ListedColormap([INF_COLOR]),
        )
    heat_ax.axvline(steps[row], color="white", lw=2.5)
    heat_ax.axvline(steps[row], color="black", lw=1, ls="--")
    heat_ax.set_ylim(len(layers) - 0.5, -0.5)  # the first layer on top
    every = max(1, int(np.ceil(len(layers) / MAX_LAYER_LABELS)))
    heat_ax.set_yticks(np.arange(0, len(layers), every))
    heat_ax.set_yticklabels(layers[::every])
    heat_ax.set_xlabel("step")
    heat_ax.set_title(f"{label} \u00b7 {run_name(recording.log_dir)}", loc="left", fontsize=10)
    bar = fig.colorbar(mesh, ax=heat_ax, location="bottom", shrink=0.6, aspect=40)
    bar.set_label(label)

    profile = values[:, row]
    profile_ax.plot(profile, np.arange(len(layers)), marker="o", ms=3, color="#08519c")
    if kind in ("log", "ratio"):
        profile_ax.set_xscale("log")
    profile_ax.set_xlabel(label)
    profile_ax.set_title(f"depth profile at step {int(steps[row])}", loc="left", fontsize=10)
    profile_ax.grid(True, alpha=0.3)
    return fig
