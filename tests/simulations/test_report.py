"""The closing comparison: a model predicting a single class at a site is marked, with what to try."""

from __future__ import annotations

from rich.console import Console

from simulations.report import ONE_CLASS_ADVICE, comparison, print_comparison, single_class_sites


def test_a_model_predicting_one_class_at_a_site_is_flagged_with_what_to_try():
    fine = {"accuracy": 0.9, "roc-auc": 0.95, "predicted-classes": 2.0, "num-examples": 30}
    one = {"accuracy": 0.731, "roc-auc": 0.61, "predicted-classes": 1.0, "num-examples": 30}
    summary = comparison({"federated": {"north": fine, "south": one}, "local": {"north": one, "south": fine}})
    assert single_class_sites(summary) == {"federated": ["south"], "local": ["north"]}
    assert single_class_sites(comparison({"federated": {"north": fine}})) == {}
    console = Console(record=True, width=200)
    print_comparison(console, summary, {}, ("accuracy", "roc-auc"))
    text = console.export_text()
    assert "0.731*" in text and "0.900*" not in text
    assert f"* one class: the federated model at 1 site(s) ('south'): {ONE_CLASS_ADVICE}" in " ".join(text.split())
