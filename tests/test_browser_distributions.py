"""The distributions card in headless Chromium, served by the real
`tensorboard`, on runs whose answers are known by construction
(tests/distribution_runs.py). Same set-up as tests/test_browser.py."""

import os
import urllib.parse

import pytest

from distribution_runs import BATCH, CONSTANT_UNITS, write_distribution_runs
from runs import HOSTILE_LAYERS, HOSTILE_RUN
from test_browser import FRAME, open_tab, screenshots, wait_until  # noqa: F401
from benchmarks.tensorboard_process import TensorBoardProcess

# The card's geometry (matrix.js, distribution.js): where a bin's row or bar is.
TOP, ROW_PX, LEFT, BAR_W = 6, 12, 64, 12


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory):
    root = write_distribution_runs(tmp_path_factory.mktemp("distribution_logs"))
    with TensorBoardProcess(root) as tb:
        tb.wait_for(lambda: b'"known"' in tb.get("data/plugin/gradwatch/runs")[1])
        yield tb


def card_of(page):
    frame = page.frame_locator(FRAME)
    frame.locator("#gw-distributions").wait_for(timeout=60000)
    return frame


def tooltip_text(frame):
    tooltip = frame.locator("#gw-tooltip")
    return tooltip.inner_text() if tooltip.is_visible() else ""


def test_one_layer_over_time_shows_a_constant_layer_in_one_bin(tensorboard, screenshots):  # noqa: F811
    with open_tab(tensorboard.url + "#gradwatch&gw_run=known") as page:
        frame = card_of(page)
        frame.locator("#gw-dist-view").select_option("time")
        frame.locator("#gw-dist-layer").select_option("constant")
        canvas = frame.locator("canvas.gw-dist-time")
        canvas.wait_for(timeout=20000)
        assert wait_until(page, lambda: frame.locator(".gw-dist-layer-name").inner_text() == "constant")
        page.wait_for_timeout(300)
        # Rows top down: NaN/Inf, +1e3, +1e2, +1e1, +1e0, +1e-1, ...
        width = canvas.bounding_box()["width"]
        canvas.hover(position={"x": LEFT + (width - LEFT) * 0.5, "y": TOP + 5.5 * ROW_PX})
        assert wait_until(page, lambda: "+1e-1" in tooltip_text(frame))
        text = tooltip_text(frame)
        assert f"elements: {BATCH * CONSTANT_UNITS}" in text and "share: 100.0%" in text
        canvas.hover(position={"x": LEFT + (width - LEFT) * 0.5, "y": TOP + 4.5 * ROW_PX})
        assert wait_until(page, lambda: "+1e0" in tooltip_text(frame))
        assert "elements: 0" in tooltip_text(frame)
        page.screenshot(path=os.path.join(screenshots, "distribution_time.png"), full_page=True)
        # Its state is in the URL.
        assert "gw_dist=time" in page.url and "gw_dist_layer=constant" in page.url


def test_every_layer_at_one_step_draws_small_multiples(tensorboard, screenshots):  # noqa: F811
    with open_tab(tensorboard.url + "#gradwatch&gw_run=known") as page:
        frame = card_of(page)
        frame.locator("#gw-dist-view").select_option("depth")
        names = frame.locator(".gw-dist-multiple-name")
        assert wait_until(page, lambda: names.all_inner_texts()[:3] == ["relu", "wide", "constant"])
        assert frame.locator("#gw-dist-step option").all_inner_texts() == ["0", "4", "8", "12"]
        frame.locator("#gw-dist-step").select_option("4")
        assert wait_until(page, lambda: "gw_dist_step=4" in page.url)
        # The constant layer's one bar: +1e-1, the 21st bin.
        bars = frame.locator("canvas.gw-dist-bars").nth(2)
        bars.hover(position={"x": 20 * BAR_W + BAR_W / 2, "y": 20})
        assert wait_until(page, lambda: "+1e-1" in tooltip_text(frame))
        assert "step: 4" in tooltip_text(frame) and "share: 100.0%" in tooltip_text(frame)
        # The ReLU's spike at exact zero: its dead units' elements at least.
        frame.locator("canvas.gw-dist-bars").nth(0).hover(position={"x": 12 * BAR_W + BAR_W / 2, "y": 20})
        assert wait_until(page, lambda: "bin: 0" in tooltip_text(frame))
        page.screenshot(path=os.path.join(screenshots, "distribution_depth.png"), full_page=True)


def test_the_unit_view_names_dead_units_and_the_cap(tensorboard, screenshots):  # noqa: F811
    with open_tab(tensorboard.url + "#gradwatch&gw_run=known&gw_dist=units&gw_dist_layer=relu") as page:
        frame = card_of(page)
        dead = frame.locator(".gw-dist-dead")
        assert wait_until(page, lambda: dead.count() and "3 of 12 units are dead" in dead.inner_text())
        assert "unit 0 since step 0, unit 1 since step 0, unit 2 since step 0." in dead.inner_text()
        assert frame.locator(".gw-dist-capped").count() == 0
        page.screenshot(path=os.path.join(screenshots, "units_relu.png"), full_page=True)
        frame.locator("#gw-dist-layer").select_option("wide")
        capped = frame.locator(".gw-dist-capped")
        assert wait_until(page, lambda: capped.count() == 1 and "first 256" in capped.inner_text())
        # No saturating nonlinearity: the page says so rather than drawing NaN.
        frame.locator("#gw-dist-name").select_option("unit_saturation")
        assert wait_until(page, lambda: "no flat region" in frame.locator("#gw-distributions").inner_text())
        # A click on a unit's step opens every layer's histogram at that step.
        frame.locator("#gw-dist-name").select_option("unit_activity")
        canvas = frame.locator("canvas.gw-units-canvas")
        assert wait_until(page, lambda: canvas.count() == 1 and frame.locator(".gw-dist-capped").count() == 1)
        page.wait_for_timeout(300)
        width = canvas.bounding_box()["width"]
        canvas.click(position={"x": LEFT + (width - LEFT) * 0.9, "y": TOP + 20})
        assert wait_until(page, lambda: frame.locator("#gw-dist-view").input_value() == "depth")
        assert wait_until(page, lambda: frame.locator("#gw-dist-step").input_value() == "12")


def test_a_link_reopens_the_unit_view_of_a_hostile_layer_as_text(tensorboard, screenshots):  # noqa: F811
    hash_part = urllib.parse.urlencode({"gw_run": HOSTILE_RUN, "gw_dist": "units", "gw_dist_layer": HOSTILE_LAYERS[0]})
    with open_tab(f"{tensorboard.url}#gradwatch&{hash_part}") as page:
        frame = card_of(page)
        dead = frame.locator(".gw-dist-dead")
        assert wait_until(page, lambda: dead.count() and "3 of 4 units are dead" in dead.inner_text())
        assert "unit 0 since step 6, unit 1 since step 0, unit 2 since step 4." in dead.inner_text()
        assert frame.locator("#gw-dist-layer").input_value() == HOSTILE_LAYERS[0]
        assert frame.locator("#gw-dist-layer option").all_inner_texts() == HOSTILE_LAYERS
        # The small multiples name every layer as text.
        frame.locator("#gw-dist-view").select_option("depth")
        names = frame.locator(".gw-dist-multiple-name")
        assert wait_until(page, lambda: names.all_inner_texts()[:4] == HOSTILE_LAYERS)
        assert frame.locator("img").count() == 0
        assert frame.locator("b").count() == 0
        assert frame.locator("script", has_text="alert").count() == 0
        page.screenshot(path=os.path.join(screenshots, "distribution_hostile.png"), full_page=True)


def test_the_keyboard_reaches_the_cards_controls(tensorboard):
    with open_tab(tensorboard.url + "#gradwatch&gw_run=known&gw_dist=time") as page:
        frame = card_of(page)
        frame.locator("#gw-dist-view").focus()
        focused = []
        for _ in range(2):
            page.keyboard.press("Tab")
            focused.append(frame.locator(":focus").evaluate("e => e.tagName + '#' + e.id"))
        assert focused == ["SELECT#gw-dist-name", "SELECT#gw-dist-layer"]
        # The arrow keys choose in a focused select.
        page.keyboard.press("ArrowDown")
        assert wait_until(page, lambda: frame.locator(".gw-dist-layer-name").inner_text() == "wide")


def card_screenshot(tb, hash_part, path, width):
    with open_tab(f"{tb.url}#gradwatch&{hash_part}", viewport={"width": width, "height": 1100}) as page:
        frame = card_of(page)
        page.wait_for_timeout(3000)
        frame.locator("#gw-distributions").scroll_into_view_if_needed()
        frame.locator("#gw-distributions").screenshot(path=path)


@pytest.mark.skipif(not os.environ.get("GRADWATCH_GALLERY"), reason="maintainer tool")
def test_readme_screenshots(tmp_path):
    """Regenerates docs/distributions.png (every layer's output histogram of
    the saturating sigmoid run beside the He-initialised ReLU run) and
    docs/units.png (a ReLU layer's units) from a gallery trained with
    distributions: GRADWATCH_GALLERY=<logdir> pytest -k readme."""
    image = pytest.importorskip("PIL.Image")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sigmoid, relu = "12_sigmoid_unit_normal_saturating", "03_relu_he_init"
    with TensorBoardProcess(os.environ["GRADWATCH_GALLERY"]) as tb:
        tb.wait_for(lambda: relu.encode() in tb.get("data/plugin/gradwatch/runs")[1])
        halves = []
        for run in (sigmoid, relu):
            halves.append(str(tmp_path / f"{run}.png"))
            card_screenshot(tb, f"gw_run={run}&gw_dist=depth&gw_dist_name=activation_histogram", halves[-1], 700)
        left, right = (image.open(p) for p in halves)
        both = image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
        both.paste(left, (0, 0))
        both.paste(right, (left.width, 0))
        both.save(os.path.join(here, "docs", "distributions.png"))
        units = os.path.join(here, "docs", "units.png")
        card_screenshot(tb, f"gw_run={relu}&gw_dist=units&gw_dist_name=unit_activity&gw_dist_layer=hidden_06", units, 1400)
        assert os.path.getsize(units) > 10_000
