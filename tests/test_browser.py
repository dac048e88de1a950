"""The GradWatch tab in headless Chromium, served by the real `tensorboard`.

Needs Debian's chromium (/usr/bin/chromium) and the Playwright package;
`.ci/run` installs both. Set GRADWATCH_SCREENSHOTS to keep the screenshots.
"""

import contextlib
import os
import re

import pytest

import urllib.parse

from gradwatch_tensorboard.summary import SummaryWriter
from runs import HOSTILE_LAYERS, HOSTILE_RUN, write_gallery
from benchmarks.tensorboard_process import TensorBoardProcess

CHROMIUM = os.environ.get("GRADWATCH_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run must install chromium")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

FRAME = 'iframe[src*="plugin_entry.html?name=gradwatch"]'


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory):
    root = write_gallery(tmp_path_factory.mktemp("browser_logs"))
    with TensorBoardProcess(root) as tb:
        tb.wait_for(lambda: b'"relu"' in tb.get("data/plugin/gradwatch/runs")[1])
        yield tb


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    target = os.environ.get("GRADWATCH_SCREENSHOTS")
    path = target or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def open_tab(url, **page_options):
    """Headless Chromium on `url`; fails on CSP violations, console errors,
    page errors or script dialogs. `page_options` go to `new_page` (e.g.
    `color_scheme="dark"`)."""
    problems = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        page = browser.new_page(**{"viewport": {"width": 1400, "height": 900}, **page_options})
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(url)
        page.problems = problems
        yield page
        browser.close()
    assert not [p for p in problems if "gradwatch" in p.lower() or "Content Security Policy" in p or "dialog" in p or "page error" in p], problems


@pytest.fixture
def page(tensorboard):
    with open_tab(tensorboard.url + "#gradwatch") as page:
        yield page


def frame_of(page):
    frame = page.frame_locator(FRAME)
    frame.locator("canvas.gw-heatmap").first.wait_for(timeout=60000)
    return frame


def painted_pixels(frame, selector="canvas.gw-heatmap"):
    """How many distinct colours the first matching canvas shows."""
    return frame.locator(selector).first.evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 16) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
            return seen.size;
        }"""
    )


def canvas_signature(frame):
    return frame.locator("canvas.gw-heatmap").first.evaluate(
        "c => c.toDataURL().length + ':' + c.toDataURL().slice(-200)"
    )


def wait_until(page, predicate, timeout=20):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        page.wait_for_timeout(250)
    return predicate()


def test_heatmap_paints_switches_hovers_and_profiles(page, screenshots):
    frame = frame_of(page)
    frame.locator("#gw-run").select_option("sigmoid")
    assert wait_until(page, lambda: painted_pixels(frame) > 20)
    before = canvas_signature(frame)
    frame.locator("#gw-metric").select_option("gradient_var")
    assert wait_until(page, lambda: canvas_signature(frame) != before)
    page.screenshot(path=os.path.join(screenshots, "gradient_var_sigmoid.png"))

    # Two runs side by side on one colour scale.
    frame.locator("#gw-run2").select_option("relu")
    assert wait_until(page, lambda: frame.locator("canvas.gw-heatmap").count() == 2)
    assert frame.locator('[data-run="relu"] canvas.gw-heatmap').count() == 1

    # Hover reads layer, step and value.
    canvas = frame.locator('[data-run="sigmoid"] canvas.gw-heatmap')
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] * 0.6, "y": 40})
    tooltip = frame.locator("#gw-tooltip")
    assert wait_until(page, lambda: tooltip.is_visible() and "dense_" in tooltip.inner_text())
    assert "step" in tooltip.inner_text().lower()

    # A click opens the depth profile of that step.
    canvas.click(position={"x": box["width"] * 0.6, "y": 40})
    profile = frame.locator("#gw-profile canvas.gw-profile")
    profile.wait_for(timeout=20000)
    assert wait_until(page, lambda: painted_pixels(frame, "#gw-profile canvas.gw-profile") > 5)
    assert "step" in frame.locator("#gw-profile").inner_text().lower()
    page.screenshot(path=os.path.join(screenshots, "side_by_side_profile.png"), full_page=True)


def test_hostile_names_render_as_text(page, screenshots):
    frame = frame_of(page)
    options = frame.locator("#gw-run option").all_inner_texts()
    assert HOSTILE_RUN in options
    frame.locator("#gw-run").select_option(HOSTILE_RUN)
    panel = frame.locator("section.gw-panel").first
    assert wait_until(page, lambda: HOSTILE_RUN in panel.inner_text())
    canvas = frame.locator("canvas.gw-heatmap").first
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] * 0.7, "y": 12})
    tooltip = frame.locator("#gw-tooltip")
    assert wait_until(page, lambda: any(name[:20] in tooltip.inner_text() for name in HOSTILE_LAYERS))
    # Nothing the names spell out became markup.
    assert frame.locator("img").count() == 0
    assert frame.locator("b").count() == 0
    assert frame.locator("script", has_text="alert").count() == 0
    page.screenshot(path=os.path.join(screenshots, "hostile_names.png"))


def test_filter_hides_rows(page):
    frame = frame_of(page)
    frame.locator("#gw-run").select_option("relu")
    wait_until(page, lambda: painted_pixels(frame) > 20)
    frame.locator("#gw-filter").fill("head")
    tooltip = frame.locator("#gw-tooltip")
    canvas = frame.locator("canvas.gw-heatmap").first
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] * 0.7, "y": 12})
    assert wait_until(page, lambda: tooltip.is_visible() and "head" in tooltip.inner_text())
    assert "dense_0" not in tooltip.inner_text()


def warning_outline_pixels(frame):
    """Pixels of the heatmap in the warning outline colour (#d50000)."""
    return frame.locator("canvas.gw-heatmap").first.evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] < 30 && d[i+2] < 30) n++;
            return n;
        }"""
    )


def test_findings_panel_lists_marks_and_selects(page, screenshots):
    frame = frame_of(page)
    frame.locator("#gw-run").select_option("sigmoid")
    panel = frame.locator("#gw-findings")
    finding = panel.locator('.gw-finding[data-rule="vanishing_gradients"]')
    finding.wait_for(timeout=30000)
    text = finding.inner_text()
    assert "warning" in text.lower() and "vanishing_gradients" in text
    assert "dense_0" in text  # the message names the layers
    assert "BatchNormalization" in text  # the remedy
    assert "warning" in panel.locator(".gw-findings-counts").inner_text()
    # The heatmap outlines the finding's layers and steps.
    assert wait_until(page, lambda: warning_outline_pixels(frame) > 50)
    assert frame.locator("#gw-metric").input_value() == "activation_var"
    before = canvas_signature(frame)
    finding.click()
    # Clicking selects its metric (and redraws the heatmap for it).
    assert wait_until(page, lambda: frame.locator("#gw-metric").input_value() == "gradient_var")
    assert wait_until(page, lambda: canvas_signature(frame) != before)
    assert "gw-selected" in (finding.get_attribute("class") or "")
    page.screenshot(path=os.path.join(screenshots, "findings_panel.png"), full_page=True)

    # A healthy run says so.
    frame.locator("#gw-run").select_option("relu")
    assert wait_until(page, lambda: "No findings" in panel.inner_text() and panel.locator(".gw-finding").count() == 0)


def test_findings_render_hostile_names_as_text(page, screenshots):
    frame = frame_of(page)
    frame.locator("#gw-run").select_option(HOSTILE_RUN)
    finding = frame.locator('#gw-findings .gw-finding[data-rule="dying_units"]')
    finding.wait_for(timeout=30000)
    assert HOSTILE_LAYERS[0] in finding.inner_text()
    assert "<script>alert(3)</script>" in finding.inner_text()
    finding.click()
    page.wait_for_timeout(500)
    assert frame.locator("img").count() == 0
    assert frame.locator("script", has_text="alert").count() == 0
    page.screenshot(path=os.path.join(screenshots, "findings_hostile.png"), full_page=True)


@pytest.mark.skipif(not os.environ.get("GRADWATCH_README_SCREENSHOT"), reason="maintainer tool")
def test_readme_screenshot(page):
    """Regenerates docs/heatmaps.png: GRADWATCH_README_SCREENSHOT=1 pytest -k readme."""
    frame = frame_of(page)
    frame.locator("#gw-run").select_option("sigmoid")
    frame.locator("#gw-metric").select_option("gradient_var")
    frame.locator("#gw-run2").select_option("relu")
    page.wait_for_timeout(2000)
    canvas = frame.locator('[data-run="sigmoid"] canvas.gw-heatmap')
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.8, "y": 40})
    page.wait_for_timeout(1500)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(os.path.join(here, "docs"), exist_ok=True)
    page.screenshot(path=os.path.join(here, "docs", "heatmaps.png"))
    assert os.path.getsize(os.path.join(here, "docs", "heatmaps.png")) > 10_000


@pytest.mark.skipif(not os.environ.get("GRADWATCH_README_SCREENSHOT"), reason="maintainer tool")
def test_readme_dark_screenshot(tensorboard):
    """Regenerates docs/dark.png: GRADWATCH_README_SCREENSHOT=1 pytest -k readme."""
    with open_tab(tensorboard.url + "#gradwatch", color_scheme="dark") as page:
        frame = frame_of(page)
        frame.locator("#gw-run").select_option("sigmoid")
        frame.locator("#gw-metric").select_option("gradient_var")
        page.wait_for_timeout(2000)
        frame.locator("canvas.gw-heatmap").first.focus()
        for key in ["ArrowLeft"] * 6 + ["ArrowDown"] * 2:
            page.keyboard.press(key)
        page.wait_for_timeout(500)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        page.screenshot(path=os.path.join(here, "docs", "dark.png"), clip={"x": 0, "y": 64, "width": 1400, "height": 660})
        assert os.path.getsize(os.path.join(here, "docs", "dark.png")) > 10_000


# -- zoom: real detail from the server -----------------------------------------

LONG_RUN_STEPS = 100_000


def long_run_value(step):
    """What the long run records for its first layer at `step`: 3 digits, so
    the tooltip shows it exactly."""
    return (step * 7) % 1000


@pytest.fixture(scope="module")
def long_tensorboard(tmp_path_factory):
    """A run recording every one of 100,000 steps, served with every step
    kept (`--samples_per_plugin gradwatch=0`)."""
    root = tmp_path_factory.mktemp("long_logs")
    writer = SummaryWriter(str(root / "long"), ["first", "second"])
    for step in range(LONG_RUN_STEPS):
        writer.write_step(step, {"activation_mean": [float(long_run_value(step)), -1.0]})
    writer.close()
    with TensorBoardProcess(root, ["--samples_per_plugin", "gradwatch=0"]) as tb:
        tb.wait_for(lambda: f'"last_step": {LONG_RUN_STEPS - 1}'.encode() in tb.get("data/plugin/gradwatch/runs")[1]
                    or f'"last_step":{LONG_RUN_STEPS - 1}'.encode() in tb.get("data/plugin/gradwatch/runs")[1],
                    timeout=120)
        yield tb


def drag(page, canvas, x0, x1, y=20):
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + x0, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + y, steps=3)
    page.mouse.move(box["x"] + x1, box["y"] + y, steps=3)
    page.mouse.up()


def test_zooming_shows_the_real_recorded_steps_of_the_range(long_tensorboard, screenshots):
    with open_tab(long_tensorboard.url + "#gradwatch") as page:
        requests = []
        page.on("request", lambda r: "/heatmap?" in r.url and requests.append(r.url))
        frame = frame_of(page)
        meta = frame.locator("section.gw-panel .gw-panel-meta").first
        assert wait_until(page, lambda: "100,000 recorded steps" in meta.inner_text(), timeout=60)
        canvas = frame.locator("canvas.gw-heatmap").first
        width = canvas.bounding_box()["width"]
        # Two drags: about 1% of the run, then about a tenth of that.
        drag(page, canvas, width * 0.40, width * 0.41)
        assert wait_until(page, lambda: "of them in view" in meta.inner_text(), timeout=30)
        drag(page, canvas, width * 0.45, width * 0.55)

        def zoomed_range():
            found = re.search(r"([\d,]+) of them in view \(([\d,]+)\u2013([\d,]+)\)", meta.inner_text())
            return found and [int(g.replace(",", "")) for g in found.groups()]

        assert wait_until(page, lambda: zoomed_range() and zoomed_range()[0] < 300, timeout=30)
        count, first, last = zoomed_range()
        # Every recorded step of the range, one column each (no "columns" note).
        assert count == last - first + 1 and 50 <= count <= 200
        assert "columns" not in meta.inner_text()
        # The page asked the server for that range at screen resolution.
        last_request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(requests[-1]).query))
        assert (int(last_request["start_step"]), int(last_request["end_step"])) == (first, last)
        assert last_request["format"] == "binary"
        assert int(last_request["max_columns"]) >= width - 200
        # Hovering across the zoomed heatmap reads single recorded steps and
        # the values recorded at them.
        tooltip = frame.locator("#gw-tooltip")
        seen = {}
        box = canvas.bounding_box()
        for i in range(40):
            x = 200 + (box["width"] - 220) * (i + 0.5) / 40
            canvas.hover(position={"x": x, "y": 12})
            wait_until(page, lambda: tooltip.is_visible(), timeout=5)
            text = tooltip.inner_text()
            step = re.search(r"^step: ([\d,]+)$", text, re.M)
            value = re.search(r"^Activation mean: (-?[\d.]+)$", text, re.M)
            assert step and value, text
            seen[int(step.group(1).replace(",", ""))] = float(value.group(1))
        assert len(seen) >= 30
        for step, value in seen.items():
            assert first <= step <= last
            assert value == long_run_value(step), (step, value)
        page.screenshot(path=os.path.join(screenshots, "zoomed_100_steps.png"))


# -- deep links ----------------------------------------------------------------


def test_a_link_or_a_reload_shows_the_same_view(tensorboard, screenshots):
    with open_tab(tensorboard.url + "#gradwatch") as page:
        frame = frame_of(page)
        frame.locator("#gw-run").select_option("sigmoid")
        frame.locator("#gw-run2").select_option("relu")
        frame.locator("#gw-metric").select_option("gradient_var")
        frame.locator("#gw-filter").fill("dense")
        canvas = frame.locator('[data-run="sigmoid"] canvas.gw-heatmap')
        assert wait_until(page, lambda: painted_pixels(frame) > 20)
        width = canvas.bounding_box()["width"]
        drag(page, canvas, width * 0.3, width * 0.8)
        status = frame.locator("#gw-status")
        assert wait_until(page, lambda: "Zoomed to steps" in status.inner_text())
        canvas.click(position={"x": width * 0.6, "y": 20})
        profile = frame.locator("#gw-profile")
        assert wait_until(page, lambda: profile.is_visible() and "step" in profile.inner_text())
        shown = profile.inner_text().split("\n")[0]
        zoom = status.inner_text().split(" \u00b7 ")[0]
        link = page.url
        assert "gw_run=sigmoid" in link and "gw_compare=relu" in link and "gw_metric=gradient_var" in link
        assert "gw_filter=dense" in link and "gw_zoom=" in link and "gw_step=" in link

    # A colleague opens the link in a new browser.
    with open_tab(link) as page:
        frame = frame_of(page)
        assert wait_until(page, lambda: frame.locator("canvas.gw-heatmap").count() == 2)
        assert frame.locator("#gw-run").input_value() == "sigmoid"
        assert frame.locator("#gw-run2").input_value() == "relu"
        assert frame.locator("#gw-metric").input_value() == "gradient_var"
        assert frame.locator("#gw-filter").input_value() == "dense"
        status = frame.locator("#gw-status")
        assert wait_until(page, lambda: status.inner_text().split(" \u00b7 ")[0] == zoom)
        profile = frame.locator("#gw-profile")
        assert wait_until(page, lambda: profile.is_visible() and profile.inner_text().split("\n")[0] == shown)
        page.screenshot(path=os.path.join(screenshots, "deep_link.png"), full_page=True)
        # A reload keeps it too.
        page.reload()
        frame = frame_of(page)
        assert wait_until(page, lambda: frame.locator("#gw-metric").input_value() == "gradient_var")
        assert wait_until(page, lambda: frame.locator("#gw-status").inner_text().split(" \u00b7 ")[0] == zoom)
        assert page.url == link
        # A link pasted into the open tab's address bar applies too.
        page.evaluate("location.hash = location.hash.replace('gw_metric=gradient_var', 'gw_metric=activation_var')")
        assert wait_until(page, lambda: frame_of(page).locator("#gw-metric").input_value() == "activation_var")
        assert wait_until(page, lambda: frame_of(page).locator("#gw-status").inner_text().split(" \u00b7 ")[0] == zoom)


# -- data out, dark mode, keyboard ------------------------------------------------


def test_download_csv_and_json_hold_the_views_exact_values(tensorboard, page, tmp_path):
    import csv
    import json

    import numpy as np

    import gradwatch

    frame = frame_of(page)
    frame.locator("#gw-run").select_option("sigmoid")
    frame.locator("#gw-run2").select_option("relu")
    frame.locator("#gw-metric").select_option("gradient_var")
    frame.locator("#gw-filter").fill("dense_1")
    assert wait_until(page, lambda: frame.locator("canvas.gw-heatmap").count() == 2)
    expected = {}
    for run in ("sigmoid", "relu"):
        rows = gradwatch.load(os.path.join(tensorboard.log_dir, run)).to_records("gradient_var")
        rows = rows[rows["layer"] == "dense_1"]
        # float32 as recorded; the server writes each in its shortest form.
        expected[run] = {int(r["step"]): np.float32(r["value"]) for r in rows}
        assert len(expected[run]) == 20

    with page.expect_download() as info:
        frame.locator("#gw-download-csv").click()
    assert info.value.suggested_filename == "gradwatch_gradient_var_sigmoid_relu.csv"
    path = tmp_path / "view.csv"
    info.value.save_as(path)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["run", "metric", "layer", "step", "first_step", "value"]
    got = {}
    for run, metric, layer, step, first_step, value in table[1:]:
        assert (metric, layer, first_step) == ("gradient_var", "dense_1", step)  # one recorded step per column
        got.setdefault(run, {})[int(step)] = np.float32(value)
    assert got == expected  # exact

    with page.expect_download() as info:
        frame.locator("#gw-download-json").click()
    assert info.value.suggested_filename.endswith(".json")
    info.value.save_as(tmp_path / "view.json")
    document = json.loads((tmp_path / "view.json").read_text())
    assert document["metric"] == "gradient_var" and document["filter"] == "dense_1"
    for table in document["runs"]:
        assert table["layers"] == ["dense_1"]
        values = {step: np.float32(column[0]) for step, column in zip(table["steps"], table["values"])}
        assert values == expected[table["run"]]
    assert sorted(t["run"] for t in document["runs"]) == ["relu", "sigmoid"]
    # The view's zoom narrows the download to its steps.
    canvas = frame.locator('[data-run="sigmoid"] canvas.gw-heatmap')
    width = canvas.bounding_box()["width"]
    drag(page, canvas, width * 0.5, width * 0.9)
    assert wait_until(page, lambda: "Zoomed to steps" in frame.locator("#gw-status").inner_text())
    with page.expect_download() as info:
        frame.locator("#gw-download-csv").click()
    info.value.save_as(tmp_path / "zoomed.csv")
    with open(tmp_path / "zoomed.csv", newline="") as f:
        steps = {int(row[3]) for row in list(csv.reader(f))[1:]}
    lo, hi = (int(s.replace(",", "")) for s in re.search(
        r"Zoomed to steps ([\d,]+)\u2013([\d,]+)", frame.locator("#gw-status").inner_text()).groups())
    assert steps == {s for s in expected["sigmoid"] if lo <= s < hi} and 0 < len(steps) < 20


def relative_luminance(rgb):
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def computed_rgb(frame, selector, prop):
    text = frame.locator(selector).first.evaluate(f"e => getComputedStyle(e).{prop}")
    return tuple(int(v) for v in re.findall(r"\d+", text)[:3])


@pytest.mark.parametrize("scheme, background, card", [
    ("light", (245, 245, 245), (255, 255, 255)),
    ("dark", (18, 18, 18), (30, 30, 30)),
])
def test_the_tab_follows_the_browsers_colour_scheme(tensorboard, screenshots, scheme, background, card):
    with open_tab(tensorboard.url + "#gradwatch", color_scheme=scheme) as page:
        frame = frame_of(page)
        frame.locator("#gw-run").select_option("sigmoid")
        frame.locator("#gw-metric").select_option("gradient_var")
        assert wait_until(page, lambda: painted_pixels(frame) > 20)
        assert computed_rgb(frame, "body", "backgroundColor") == background
        assert computed_rgb(frame, ".gw-heatmap-card", "backgroundColor") == card
        # Text is readable on both: WCAG AA (4.5:1) for every kind of text.
        for selector in ["body", ".gw-description", ".gw-hint", ".gw-panel-meta", ".gw-field-label",
                         ".gw-finding-message", ".gw-finding-remedy", "#gw-download-csv"]:
            color = computed_rgb(frame, selector, "color")
            assert contrast(color, card) >= 4.5, (selector, color, card)
        # The canvases draw on the card's colour, their labels readable on it.
        corner = frame.locator("canvas.gw-heatmap").first.evaluate(
            "c => Array.from(c.getContext('2d').getImageData(1, 1, 1, 1).data.slice(0, 3))")
        assert tuple(corner) == card
        page.screenshot(path=os.path.join(screenshots, f"scheme_{scheme}.png"))


def test_the_keyboard_reaches_every_control_and_moves_the_heatmap_cursor(tensorboard, page, screenshots):
    frame = frame_of(page)
    frame.locator("#gw-run").select_option("sigmoid")
    frame.locator("#gw-metric").select_option("gradient_var")
    assert wait_until(page, lambda: painted_pixels(frame) > 20)
    frame.locator("#gw-findings .gw-finding").first.wait_for(timeout=30000)
    frame.locator("#gw-run").focus()
    focused = []
    for _ in range(30):
        page.keyboard.press("Tab")
        focused.append(frame.locator(":focus").evaluate("e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className"))
        if focused[-1].startswith("CANVAS"):
            break
    tags = [f.split("#")[0].split(".")[0] for f in focused]
    assert set(tags) <= {"SELECT", "INPUT", "BUTTON", "CANVAS"}, focused
    assert tags[-1] == "CANVAS" and "gw-heatmap" in focused[-1], focused
    for control in ["#gw-run2", "#gw-metric", "#gw-filter", "#gw-download-csv", "#gw-download-json"]:
        assert any(control in f for f in focused), (control, focused)
    assert sum("gw-finding" in f for f in focused) == 2  # both findings are buttons

    cursor = frame.locator("#gw-cursor-text")
    tooltip = frame.locator("#gw-tooltip")

    def at():
        text = cursor.inner_text()
        layer = text.split(",")[0]
        step = re.search(r"step: ([\d,]+)", text)
        return layer, int(step.group(1).replace(",", "")) if step else None

    # The cursor starts on the top layer at the last recorded step (0, 2, ..., 38).
    assert wait_until(page, lambda: at() == ("dense_0", 38))
    assert tooltip.is_visible() and "dense_0" in tooltip.inner_text()
    page.keyboard.press("ArrowLeft")
    assert wait_until(page, lambda: at() == ("dense_0", 36))
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert wait_until(page, lambda: at() == ("dense_2", 36))
    page.keyboard.press("ArrowUp")
    assert wait_until(page, lambda: at() == ("dense_1", 36))
    page.keyboard.press("Home")
    assert wait_until(page, lambda: at() == ("dense_1", 0))
    page.keyboard.press("ArrowLeft")  # stays at the first column
    assert wait_until(page, lambda: at() == ("dense_1", 0))
    page.keyboard.press("PageDown")  # ten layers down: the last of nine
    assert wait_until(page, lambda: at() == ("head", 0))
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    assert wait_until(page, lambda: at() == ("head", 36))
    # The value shown is the one recorded there (3 significant digits).
    import gradwatch

    run = gradwatch.load(os.path.join(tensorboard.log_dir, "sigmoid"))
    recorded = run.metric("gradient_var")[list(run.steps).index(36), run.layers.index("head")]
    shown = re.search(r"Gradient variance: ([\d.e-]+)", tooltip.inner_text()).group(1)
    assert float(shown) == pytest.approx(recorded, rel=5e-3)
    page.screenshot(path=os.path.join(screenshots, "keyboard_cursor.png"))
    # Enter opens the depth profile of the cursor's step.
    page.keyboard.press("Enter")
    profile = frame.locator("#gw-profile")
    assert wait_until(page, lambda: profile.is_visible() and "step 36" in profile.inner_text())
    # Tab leaves the heatmap: the cursor goes with it.
    page.keyboard.press("Tab")
    assert wait_until(page, lambda: not tooltip.is_visible())


# -- the zoom's edges ------------------------------------------------------------

SPARSE_EVERY = 10


@pytest.fixture(scope="module")
def sparse_tensorboard(tmp_path_factory):
    """A run recording one step in ten (`update_freq=10`): a zoom's edges
    fall between recorded steps."""
    root = tmp_path_factory.mktemp("sparse_logs")
    writer = SummaryWriter(str(root / "sparse"), ["first", "second", "third"])
    for step in range(0, 20_000, SPARSE_EVERY):
        writer.write_step(step, {"activation_mean": [float(step % 997), 1.0, -1.0]})
    writer.close()
    with TensorBoardProcess(root) as tb:
        tb.wait_for(lambda: b"19990" in tb.get("data/plugin/gradwatch/runs")[1], timeout=60)
        yield tb


def background_columns(frame):
    """Pixel columns of the heatmap with a vertical run of at least 8 pixels
    in the colour of its empty body (#f3f3f3): a band of the step axis drawn
    without data (a stray anti-aliased pixel of text does not count)."""
    return frame.locator("canvas.gw-heatmap").first.evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let x = 0; x < c.width; x++) {
                let run = 0, longest = 0;
                for (let y = 0; y < c.height; y++) {
                    const i = 4 * (y * c.width + x);
                    run = d[i] === 243 && d[i+1] === 243 && d[i+2] === 243 ? run + 1 : 0;
                    longest = Math.max(longest, run);
                }
                if (longest >= 8) n++;
            }
            return n;
        }"""
    )


def test_a_zoom_between_recorded_steps_has_data_up_to_its_edges(sparse_tensorboard, screenshots):
    with open_tab(sparse_tensorboard.url + "#gradwatch") as page:
        frame = frame_of(page)
        meta = frame.locator("section.gw-panel .gw-panel-meta").first
        assert wait_until(page, lambda: "2,000 recorded steps" in meta.inner_text(), timeout=60)
        assert wait_until(page, lambda: painted_pixels(frame) > 20)
        assert background_columns(frame) == 0
        canvas = frame.locator("canvas.gw-heatmap").first
        width = canvas.bounding_box()["width"]
        # About 50 recorded steps: each column some 25 pixels wide.
        drag(page, canvas, width * 0.403, width * 0.43)
        assert wait_until(page, lambda: "of them in view" in meta.inner_text(), timeout=30)
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(screenshots, "zoom_between_recorded_steps.png"))
        assert background_columns(frame) == 0


# -- the binary heatmap, decoded by the page ------------------------------------


def test_the_page_decodes_the_binary_heatmap_as_documented(tensorboard, page):
    """`api.js` decodes the packed codes to the values an independent
    decoder of docs/http_api.md's format reads (NaN and +-Infinity too)."""
    from heatmap_format import decode_binary_heatmap
    import numpy as np

    frame_of(page)
    plugin = next(f for f in page.frames if "plugin_entry.html?name=gradwatch" in f.url)
    for run, metric in (("sigmoid", "gradient_var"), ("relu", "dead_units"), ("relu", "saturation_fraction"),
                        (HOSTILE_RUN, "activation_var")):
        query = urllib.parse.urlencode({"run": run, "metric": metric, "max_columns": 37, "format": "binary"})
        status, body = tensorboard.get(f"data/plugin/gradwatch/heatmap?{query}")
        assert status == 200
        header, expected = decode_binary_heatmap(body)
        decoded = plugin.evaluate(
            """async (query) => {
                const api = await import('/data/plugin/gradwatch/static/api.js');
                const response = await fetch('/data/plugin/gradwatch/heatmap?' + query);
                const { values } = api.decodeBinaryHeatmap(await response.arrayBuffer());
                return Array.from(values, (v) => Number.isFinite(v) ? v : String(v));
            }""",
            query,
        )
        special = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
        got = np.array([special[v] if isinstance(v, str) else v for v in decoded], float)
        np.testing.assert_allclose(got, expected.reshape(-1), rtol=1e-12, atol=0)
