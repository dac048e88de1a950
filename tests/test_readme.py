"""The README documents what the code does, and CI runs the README's command."""

import ast
import dataclasses
import inspect
import math
import pathlib
import re

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


def _section(title):
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


# "`name` = 1e-3", "`spike_factor` = 100×", "`bn_converging_drop` = 5%".
_DOCUMENTED_VALUE = re.compile(
    r"`(\w+)` = (-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)(×|%)?"
)


def _documented_values(text):
    values = {}
    for name, number, unit in _DOCUMENTED_VALUE.findall(text):
        value = float(number) / (100.0 if unit == "%" else 1.0)
        values.setdefault(name, []).append(value)
    return values


def test_every_threshold_default_in_the_readme_equals_the_code():
    from gradwatch.findings import Thresholds

    documented = _documented_values(_section("Findings"))
    defaults = {f.name: f.default for f in dataclasses.fields(Thresholds)}
    missing = sorted(set(defaults) - set(documented))
    assert not missing, f"Thresholds fields without a documented default: {missing}"
    for name, values in documented.items():
        assert name in defaults, f"README documents `{name}`, not a Thresholds field"
        for value in values:
            assert math.isclose(value, defaults[name], rel_tol=1e-12), (
                f"README says `{name}` = {value}; Thresholds.{name} = {defaults[name]}"
            )


def test_every_callback_default_in_the_readme_equals_the_code():
    from gradwatch.callback import GradWatch

    signature = inspect.signature(GradWatch.__init__).parameters
    block = README[README.index("gradwatch.GradWatch(\n"):]
    block = block[:block.index("\n)")]
    documented = dict(
        re.findall(r"^\s+(\w+)=([^,]+),", block, flags=re.MULTILINE)
    )
    expected = {
        name: p.default for name, p in signature.items()
        if p.default is not inspect.Parameter.empty
    }
    assert set(documented) == set(expected)
    for name, text in documented.items():
        assert ast.literal_eval(text) == expected[name], name
    # Prose elsewhere ("τ = `saturation_threshold` = 0.05") agrees too.
    for name, values in _documented_values(README).items():
        if name in expected:
            assert all(v == expected[name] for v in values), name
