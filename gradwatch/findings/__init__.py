"""Findings: the recorded numbers turned into named problems with remedies.

`evaluate(recording)` applies a fixed set of rules to a GradWatch recording
and returns `Finding`s: a stable rule id, a severity, the layers and steps
concerned, a one-line message and a remedy from the field's practice. One
set of rules serves the callback (while training, `LiveFindings` on a
`RecentWindow`), the reader (`gradwatch.load(...).findings()`), the CLI
(`python -m gradwatch report`) and, through the document the callback
writes, the TensorBoard plugin.

Severity: `"warning"` for a problem seen in the training data that hurts
training (a CI job can fail on it with `report --strict`); `"info"` for a
cause worth knowing or a problem that is being contained (a moderately
mismatched init, exploding gradients whose updates stay bounded, BatchNorm
moving statistics still converging).

Where each idea lives:

- `model`: severities, rule ids, `Thresholds`, `Finding` (an entry of the
  findings document, `gradwatch_tensorboard.findings_document`);
- `view`: what the rules read from a recording (any recording-like object);
- `sustained`: conditions held on enough consecutive records;
- `chain`: the main chain and the first-to-last gradient variance ratio;
- `rules/`: one module per rule; `evaluation`: `evaluate`;
- `text` and `remedies`: how findings read, what they suggest;
- `window`, `tracker`, `headline`, `live`: findings while training.

Only numpy is needed: this package imports no TensorFlow.

Example:

```python
run = gradwatch.load("runs/exp1")
for finding in gradwatch.findings.evaluate(run, Thresholds(min_records=5)):
    print(finding, finding.remedy)
```
"""

from .chain import first_to_last, gradient_var_ratio, main_chain
from .evaluation import Findings, evaluate
from .live import LiveFindings
from .model import INFO, RULES, WARNING, Finding, Thresholds, counts, sort_findings
from .text import describe_layers, render_message
from .tracker import FindingTracker
from .window import RecentWindow

__all__ = [
    "INFO",
    "RULES",
    "WARNING",
    "Finding",
    "FindingTracker",
    "Findings",
    "LiveFindings",
    "RecentWindow",
    "Thresholds",
    "counts",
    "describe_layers",
    "evaluate",
    "first_to_last",
    "gradient_var_ratio",
    "main_chain",
    "render_message",
    "sort_findings",
]
