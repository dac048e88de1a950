"""`Recording.plot(metric)`: the heatmap's pixels and the profile's line hold
the recorded values (rendered with matplotlib's Agg backend)."""

import numpy as np
import pytest

import gradwatch
from gradwatch_tensorboard.summary import SummaryWriter

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

LAYERS = ["dense_0", "dense_1", "dense_2", "head"]
STEPS = [0, 10, 20, 60]  # uneven, as TensorBoard's sampling leaves them


def variance(layer, step):
    """activation_var by construction: decades apart by layer, rising by step."""
    return 10.0 ** (-layer) * (1 + step / 10)


def mean(layer, step):
    return (layer - 1.5) * (step + 1) / 61  # signed, both sides of 0


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("plot") / "run"
    writer = SummaryWriter(str(log_dir), LAYERS)
    for step in STEPS:
        writer.write_step(step, {
            "activation_var": [variance(i, step) for i in range(len(LAYERS))],
            "activation_mean": [mean(i, step) for i in range(len(LAYERS))],
            "dead_fraction": [0.25, np.nan, np.inf, 0.0],
        })
    writer.close()
    return gradwatch.load(log_dir)


def rendered(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int)


def pixel_at(fig, image, ax, x, y):
    px, py = ax.transData.transform((x, y))
    return image[int(round(image.shape[0] - py)), int(round(px))]


def cell_centre(layer, column):
    edges = list(STEPS) + [STEPS[-1] + (STEPS[-1] - STEPS[0]) / (len(STEPS) - 1)]
    return (edges[column] + edges[column + 1]) / 2, layer


@pytest.mark.parametrize("metric, value_of", [("activation_var", variance), ("activation_mean", mean)])
def test_every_heatmap_cell_has_the_colour_of_its_value(recording, metric, value_of):
    fig = recording.plot(metric)
    heat_ax, profile_ax = fig.axes[:2]
    mesh = heat_ax.collections[0]
    image = rendered(fig)
    for layer in range(len(LAYERS)):
        for column, step in enumerate(STEPS):
            want = np.round(np.array(mesh.cmap(mesh.norm(value_of(layer, step)))[:3]) * 255)
            got = pixel_at(fig, image, heat_ax, *cell_centre(layer, column))
            assert np.abs(got - want).max() <= 3, (layer, step, got, want)
    # The mesh holds the values themselves, layers as rows, top first.
    np.testing.assert_allclose(mesh.get_array().reshape(len(LAYERS), len(STEPS)),
                               [[value_of(i, s) for s in STEPS] for i in range(len(LAYERS))], rtol=1e-6)
    assert heat_ax.get_ylim()[0] > heat_ax.get_ylim()[1]
    assert [t.get_text() for t in heat_ax.get_yticklabels()] == LAYERS


def test_the_scales_are_the_tabs(recording):
    log_fig = recording.plot("activation_var")
    mesh = log_fig.axes[0].collections[0]
    assert isinstance(mesh.norm, matplotlib.colors.LogNorm)
    assert mesh.norm.vmin == pytest.approx(variance(3, 0), rel=1e-6)
    assert mesh.norm.vmax == pytest.approx(variance(0, 60), rel=1e-6)
    assert mesh.cmap.name == "viridis"
    signed = recording.plot("activation_mean").axes[0].collections[0]
    assert (signed.norm.vmin, signed.norm.vmax) == pytest.approx((-1.5, 1.5), rel=1e-6)
    assert signed.cmap.name == "gradwatch_blue_orange"
    # Centre light, ends blue and orange.
    low, centre, high = (np.array(signed.cmap(signed.norm(v))[:3]) for v in (-1.5, 0.0, 1.5))
    assert centre.min() > 0.9 and low[2] > low[0] and high[0] > high[2]


def test_nan_is_grey_and_infinity_magenta(recording):
    fig = recording.plot("dead_fraction")
    heat_ax = fig.axes[0]
    image = rendered(fig)
    assert list(pixel_at(fig, image, heat_ax, *cell_centre(1, 2))) == [0xD9, 0xD9, 0xD9]
    assert list(pixel_at(fig, image, heat_ax, *cell_centre(2, 2))) == [255, 0, 255]


def test_the_profile_is_the_chosen_step(recording):
    fig = recording.plot("activation_var", step=20)
    line = fig.axes[1].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [variance(i, 20) for i in range(len(LAYERS))], rtol=1e-6)
    np.testing.assert_array_equal(line.get_ydata(), np.arange(len(LAYERS)))
    assert fig.axes[1].get_xscale() == "log"
    assert "step 20" in fig.axes[1].get_title(loc="left")
    last = recording.plot("activation_var").axes[1].lines[0]
    np.testing.assert_allclose(last.get_xdata(), [variance(i, 60) for i in range(len(LAYERS))], rtol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metric": "gradient_var"}, ValueError, "`metric` 'gradient_var' was not recorded"),
    ({"metric": 3}, TypeError, "`metric` must be a metric name"),
    ({"metric": "activation_var", "step": 11}, ValueError, "`step` must be a recorded step"),
    ({"metric": "activation_var", "step": "10"}, ValueError, "`step` must be a recorded step"),
])
def test_bad_arguments_name_themselves(recording, kwargs, error, match):
    with pytest.raises(error, match=match):
        recording.plot(**kwargs)


def test_without_matplotlib_says_how_to_install_it(recording, without_module):
    without_module("matplotlib")
    with pytest.raises(ImportError, match="pip install matplotlib"):
        recording.plot("activation_var")
