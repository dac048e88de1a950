"""One schema for the findings document (`findings_document`): `Finding` is
an entry of it, the reader and the plugin validate with it, it needs no
NumPy, and the page (`static/findings.js`) reads only fields it defines."""

import dataclasses
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from gradwatch import findings
from gradwatch_tensorboard import findings_document as schema
from gradwatch_tensorboard import plugin as plugin_module

STATIC = pathlib.Path(__file__).resolve().parent.parent / "tensorboard_plugin" / "static"

MINIMAL = {"rule": "dying_units", "severity": "warning", "first_step": 4, "last_step": 9}


def test_a_finding_has_exactly_the_schemas_fields():
    assert [f.name for f in dataclasses.fields(findings.Finding)] == list(schema.FINDING_FIELDS)
    finding = findings.Finding(
        "bn_skew", "info", ["bn"], np.int64(3), np.int64(7), "m", "r", "bn_skew",
        ongoing=np.bool_(True), details={"skew": np.float64(np.nan), "var_ratio": np.float32(2.0)},
    )
    document = finding.to_json()
    assert list(document) == list(schema.FINDING_FIELDS)
    # NumPy numbers become plain ones, NaN becomes null: any JSON reader takes it.
    assert json.loads(json.dumps(document, allow_nan=False)) == dict(
        document, details={"skew": None, "var_ratio": 2.0}
    )
    assert type(document["first_step"]) is int and document["ongoing"] is True
    assert findings.Finding.from_json(document) == dataclasses.replace(
        finding, first_step=3, last_step=7, ongoing=True, details={"skew": None, "var_ratio": 2.0}
    )


def test_a_minimal_finding_gets_every_default():
    parsed = schema.parse_finding(dict(MINIMAL, unknown="dropped"))
    assert parsed == {
        "rule": "dying_units", "severity": "warning", "layers": [], "first_step": 4,
        "last_step": 9, "message": "", "remedy": "", "metric": "", "ongoing": False,
        "summary": "", "group": "", "details": {},
    }
    assert schema.parse_finding(dict(MINIMAL, layers=[1, "b"], first_step="5"))["layers"] == ["1", "b"]


@pytest.mark.parametrize("broken, why", [
    ({k: v for k, v in MINIMAL.items() if k != "first_step"}, "needs 'first_step'"),
    (dict(MINIMAL, last_step="later"), "last_step"),
    (dict(MINIMAL, severity="fatal"), "severity"),
    (["not", "an", "object"], "JSON object"),
])
def test_a_malformed_finding_is_refused_by_name(broken, why):
    with pytest.raises(ValueError, match=why):
        schema.parse_finding(broken)
    with pytest.raises(ValueError, match=why):
        findings.Finding.from_json(broken)


def test_a_document_keeps_its_good_findings_and_drops_the_rest():
    document = {"version": 1, "step": 9, "final": True, "findings": [
        MINIMAL, dict(MINIMAL, severity="fatal"), {"rule": "broken"}, "text",
    ]}
    parsed = schema.parse_document(document)
    assert [f["rule"] for f in parsed["findings"]] == ["dying_units"]
    assert (parsed["step"], parsed["final"], parsed["thresholds"]) == (9, True, {})
    assert schema.parse_document({"step": 3}) is None
    assert schema.parse_document([MINIMAL]) is None
    assert schema.parse_document({"step": True, "findings": []})["step"] is None
    made = schema.make_document(9, True, {"min_records": 3}, [MINIMAL])
    assert list(made) == list(schema.DOCUMENT_FIELDS)
    assert schema.parse_document(made)["findings"] == [schema.parse_finding(MINIMAL)]


def test_the_plugin_serves_what_the_shared_validator_reads():
    document = {"version": 1, "step": 9, "final": False,
                "findings": [MINIMAL, dict(MINIMAL, severity="fatal")]}
    tensor = np.array([json.dumps(document).encode()], dtype=object)
    served = plugin_module.parse_findings_document(tensor)
    assert served == {"available": True, "step": 9, "final": False,
                      "findings": schema.parse_document(document)["findings"]}
    assert plugin_module.parse_findings_document(np.array([b"{not json"], dtype=object)) is None


def test_the_validator_needs_no_numpy():
    code = (
        "import sys; import gradwatch_tensorboard.findings_document as d; "
        "d.parse_document(d.make_document(1, True, {}, [])); "
        "print(sorted(m for m in ('numpy', 'tensorflow', 'gradwatch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_page_reads_only_fields_of_the_schema():
    source = (STATIC / "findings.js").read_text()
    body = source[source.index("export function decodeFinding"):source.index("export class FindingsPanel")]
    read = set(re.findall(r"(?<![\w.])f\.([a-z_]+)\b", body))
    # What the panel needs to list and outline a finding, at least.
    assert {"rule", "severity", "layers", "first_step", "last_step", "message", "remedy"} <= read
    assert read <= set(schema.FINDING_FIELDS), read - set(schema.FINDING_FIELDS)
    severities = set(re.findall(r"f\.severity === '([a-z]+)'", body))
    assert severities and severities <= set(schema.SEVERITIES)
