"""`benchmarks/overhead.py --quick` runs to the end and prints its tables.

A smoke test: it checks that every condition gets a ratio, never what the
ratios are (timings on a shared test machine mean nothing).
"""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RATIO = re.compile(r"^\d+\.\d\d×$")
COLUMNS = ("every 1", "every 4", "every 16", "every 64", "Keras TensorBoard")


def _table_rows(text, header_start):
    """The cells of the Markdown table whose header starts with
    `header_start`: the header row, then each data row."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith(header_start)
    )
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_benchmark_prints_a_ratio_for_every_condition(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.overhead", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = completed.stdout
    assert report.startswith("Machine: ")
    assert "TensorFlow" in report.splitlines()[0]

    tables = [i for i, line in enumerate(report.splitlines())
              if line.startswith("| model | every 1")]
    assert len(tables) == 2  # wall time and CPU time
    for header_line in tables:
        header_text = report.splitlines()[header_line]
        rows = _table_rows(report, header_text)
        header, data = rows[0], rows[1:]
        for column in COLUMNS:
            assert any(cell.startswith(column) for cell in header), column
        assert len(data) == 1 and data[0][0].startswith("tiny MLP")
        ratios = data[0][1:]
        assert len(ratios) == len(header) - 1
        assert all(RATIO.match(cell) for cell in ratios), ratios

    assert "Targets:" in report
    assert out.exists() and '"tiny_mlp"' in out.read_text()
