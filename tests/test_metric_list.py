"""One list of metrics: `metadata.METRIC_NAMES`. The callback records it, the
README's table defines it, and the page takes it from the server."""

import pathlib
import re

from gradwatch import hooks
from gradwatch_tensorboard import metadata

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATIC = ROOT / "tensorboard_plugin" / "static"


def readme_metric_table():
    """The metric names of README's "## Metrics" table, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| metric | definition |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", table, re.M)


def test_the_readme_table_lists_metadata_metrics_in_order():
    assert readme_metric_table() == list(metadata.METRIC_NAMES)


def test_the_callback_records_metadata_metrics_in_order():
    assert tuple(hooks.SNAPSHOT_METRICS) == metadata.METRIC_NAMES


def test_the_page_has_no_list_of_metrics_of_its_own():
    # It reads `metric_names` from the `runs` route. The only metric names
    # it may spell are the two series the depth profile draws, and those
    # must be real metrics.
    named = {}
    for path in STATIC.glob("*.js"):
        for name in re.findall(r"'([a-z]+(?:_[a-z]+)+)'", path.read_text()):
            if name in metadata.METRIC_NAMES or re.match(r"(activation|gradient|dead|bn|update|saturation)_", name):
                named.setdefault(path.name, set()).add(name)
    assert named == {"profile.js": {"activation_var", "gradient_var"}}
    assert {"activation_var", "gradient_var"} <= set(metadata.METRIC_NAMES)


def test_the_readme_table_lists_metadata_distributions_in_order():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| distribution | definition |", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `([a-z_]+)` \|", table, re.M) == list(metadata.DISTRIBUTION_NAMES)
