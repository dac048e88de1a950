"""`benchmarks/overhead.py --quick` and `benchmarks/first_fit.py --quick` run
to the end and print their tables.

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


def _run_quick(module, out):
    """`python -m <module> --quick --out <out>`; its report."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_quick_benchmark_prints_a_ratio_for_every_condition(tmp_path):
    out = tmp_path / "results.json"
    report = _run_quick("benchmarks.overhead", out)
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


def test_quick_first_fit_benchmark_prints_both_tables(tmp_path):
    out = tmp_path / "first_fit.json"
    report = _run_quick("benchmarks.first_fit", out)
    first = _table_rows(report, "| model | plain: fit CPU s")
    assert first[1][0] == "tiny_mlp"
    assert all(RATIO.match(r) for r in first[1][3].split(" / ")), first[1][3]
    again = _table_rows(report, "| model | new traces")
    # A new GradWatch on the same layers of a trained model traces nothing.
    assert again[1][0] == "tiny_mlp" and again[1][1] == "0"
    assert out.exists()
