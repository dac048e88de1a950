"""The README documents what the code does, and CI runs the README's command."""

import pathlib

import gradwatch

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'


def test_every_metric_is_defined_in_the_readme():
    for name in gradwatch.METRIC_NAMES:
        assert f"| `{name}` |" in README, name


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in README
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


def test_readme_gives_the_main_job_and_its_screenshot():
    assert "pip install -e . && python -m demo" in README
    assert (ROOT / "docs" / "heatmaps.png").exists()
