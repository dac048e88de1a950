"""The findings on the validation corpus (`tests/corpus.py`): no warning on
healthy well-known architectures trained as users train them, the
pathologies still named, and README's precision table generated from it."""

import pathlib

import pytest

import corpus
from gradwatch import findings

pytestmark = pytest.mark.slow

APPLICATIONS = [c for c in corpus.CASES if "keras.applications" in c.name]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("corpus"))
    return {case: corpus.run_case(case, root) for case in corpus.CASES}


def warnings(found):
    return {f.rule for f in found if f.severity == findings.WARNING}


def test_healthy_models_raise_no_warning(results):
    raised = {c.name: warnings(f) for c, f in results.items() if c.kind == corpus.HEALTHY}
    assert raised and not any(raised.values()), raised


def test_deep_healthy_applications_raise_nothing_at_all(results):
    # Infos that fire on every healthy deep net teach users to ignore the panel.
    assert {c.name: [str(f) for f in results[c]] for c in APPLICATIONS} == {
        c.name: [] for c in APPLICATIONS
    }


def test_pathologies_raise_the_warnings_they_are_known_for(results):
    missed = {
        c.name: sorted(c.expect - warnings(f))
        for c, f in results.items() if c.kind == corpus.PATHOLOGY
    }
    assert not any(missed.values()), missed


def test_readme_precision_table_is_the_corpus_table(results):
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = corpus.precision_table(results)
    assert table in readme, "README's precision table is stale; paste:\n" + table
