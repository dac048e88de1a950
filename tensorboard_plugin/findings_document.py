"""The findings document: one schema and its validator.

The callback writes this document under `metadata.FINDINGS_TAG` as it
finds problems and when `fit` ends; `gradwatch.load(...).recorded_findings`
reads it back, `gradwatch.findings.Finding` is one entry of it, and the
plugin's `findings` route serves it to the page (`static/findings.js`). All
of them go through `finding_fields`, `parse_finding` and `parse_document`
here. Plain Python: no NumPy, no TensorFlow, so the plugin imports it at no
cost.

Example:

>>> document = make_document(12, True, {}, [{"rule": "dying_units",
...     "severity": "warning", "first_step": 4, "last_step": 12}])
>>> parse_document(document)["findings"][0]["layers"]
[]
"""

import math
import numbers

from . import metadata

WARNING = "warning"
INFO = "info"
SEVERITIES = (WARNING, INFO)

# Every field of a finding: its type, and its default where it may be absent
# (`REQUIRED` where it may not).
REQUIRED = object()
FINDING_FIELDS = {
    "rule": (str, REQUIRED),
    "severity": (str, REQUIRED),
    "layers": (list, ()),
    "first_step": (int, REQUIRED),
    "last_step": (int, REQUIRED),
    "message": (str, ""),
    "remedy": (str, ""),
    "metric": (str, ""),
    "ongoing": (bool, False),
    "summary": (str, ""),
    "group": (str, ""),
    "details": (dict, None),
}
# Every field of the document.
DOCUMENT_FIELDS = ("version", "step", "final", "thresholds", "findings")


def parse_finding(item):
    """One finding of a document, every field of its type.

    Args:
        item: A decoded JSON value.

    Returns:
        A dict with every key of `FINDING_FIELDS` (unknown keys dropped):
        text as `str`, `layers` a list of `str`, steps `int`, `ongoing` a
        `bool`, `details` a dict.

    Raises:
        ValueError: if `item` is not a finding (not an object, a required
            field missing or not a number, or a severity other than
            `SEVERITIES`).
    """
    if not isinstance(item, dict):
        raise ValueError(f"a finding must be a JSON object, got {type(item).__name__}")
    out = {}
    for name, (kind, default) in FINDING_FIELDS.items():
        value = item.get(name)
        if value is None:
            if default is REQUIRED:
                raise ValueError(f"a finding needs {name!r}")
            value = default
        try:
            if kind is list:
                out[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else []
            elif kind is dict:
                out[name] = dict(value) if isinstance(value, dict) else {}
            elif kind is int:
                out[name] = int(value)
            else:
                out[name] = kind(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"finding field {name!r}: {e}") from e
    if out["severity"] not in SEVERITIES:
        raise ValueError(
            f"a finding's severity must be one of {SEVERITIES}, got {out['severity']!r}"
        )
    return out


def parse_document(document):
    """A findings document, validated.

    Args:
        document: A decoded JSON value.

    Returns:
        `{"version", "step", "final", "thresholds", "findings"}`, each
        finding as `parse_finding` gives it (malformed ones are dropped),
        `step` an int or None; or None if `document` is no findings document
        (not an object, or no list of findings).
    """
    if not isinstance(document, dict) or not isinstance(document.get("findings"), list):
        return None
    findings = []
    for item in document["findings"]:
        try:
            findings.append(parse_finding(item))
        except ValueError:
            continue
    step, version = document.get("step"), document.get("version")
    thresholds = document.get("thresholds")
    return {
        "version": version if _is_int(version) else metadata.FINDINGS_VERSION,
        "step": step if _is_int(step) else None,
        "final": bool(document.get("final", False)),
        "thresholds": thresholds if isinstance(thresholds, dict) else {},
        "findings": findings,
    }


def make_document(step, final, thresholds, findings):
    """The document the callback writes.

    Args:
        step: The last recorded step.
        final: Whether `fit` has ended.
        thresholds: The thresholds' fields (a dict).
        findings: Findings as dicts (`gradwatch.findings.Finding.to_json`).

    Returns:
        A JSON-serialisable dict with every key of `DOCUMENT_FIELDS`.
    """
    return {
        "version": metadata.FINDINGS_VERSION,
        "step": int(step),
        "final": bool(final),
        "thresholds": json_safe(dict(thresholds)),
        "findings": [json_safe(f) for f in findings],
    }


def json_safe(value):
    """`value` with every number a plain int or float and NaN/Inf as None
    (JSON has no NaN), so that any JSON reader takes it."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):  # NumPy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
