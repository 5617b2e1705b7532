"""medfed-sim's closing table: whole when piped or logged, never cut to 80 columns; a model predicting a single
class at a site is marked, with what to try; a figure a site cannot give is explained."""

from __future__ import annotations

import io

from rich.console import Console

from simulations.report import (
    NO_EVALUATION,
    NOT_COMPUTED,
    ONE_CLASS_ADVICE,
    comparison,
    print_comparison,
    single_class_sites,
)


def test_the_closing_table_keeps_its_headers_when_not_printed_to_a_terminal():
    per_site = {s: {"accuracy": 0.9, "roc-auc": 0.95, "num-examples": 20} for s in ("hospital-1", "hospital-2")}
    summary = comparison({m: per_site for m in ("federated", "pooled", "local")})
    out = io.StringIO()
    console = Console(file=out, width=80)  # what rich picks for a pipe or a log file
    assert not console.is_terminal
    print_comparison(console, summary, {"hospital-1": {"epsilon": 1.5, "mia-auc": 0.51}}, ("accuracy", "roc-auc"))
    text = out.getvalue()
    assert "…" not in text
    header = "".join(line for line in text.splitlines() if line.startswith("┃"))
    for word in ("federated", "pooled", "local", "accuracy", "roc-auc", "membership", "attack AUC"):
        assert word in header, word
    assert max(len(line) for line in text.splitlines()) > 80
    assert console.width == 80  # the console is left as it was


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


def test_a_figure_a_site_cannot_give_is_explained_under_the_table():
    full = {"accuracy": 0.6, "roc-auc": 0.7, "num-examples": 30}
    two_of_five = {"accuracy": 0.86, "num-examples": 59}  # its held-out patients hold 2 of the study's 5 classes
    summary = comparison({"federated": {"cleveland": full, "hungarian": two_of_five}})
    console = Console(record=True, width=200)
    print_comparison(console, summary, {}, ("accuracy", "roc-auc"))
    text = " ".join(console.export_text().split())
    assert f"-: no roc-auc at 'hungarian': {NOT_COMPUTED['roc-auc']}" in text
    assert "no accuracy" not in text
    console = Console(record=True, width=200)
    print_comparison(console, summary, {}, ("accuracy", "roc-auc"), {"hungarian": "held-out split of 6 rows"})
    assert "no roc-auc" not in console.export_text()  # an unreliable site's line says why already


def test_a_model_that_never_evaluated_is_said_to_have_sent_nothing_not_blamed_on_the_sites_splits():
    """A study its sites refused (an ε above their cap) once showed "that site's held-out split cannot give it"."""
    baseline = {s: {"accuracy": 0.9, "roc-auc": 0.95, "num-examples": 30} for s in ("north", "south")}
    summary = comparison({"federated": {}, "local": baseline})
    console = Console(record=True, width=200)
    print_comparison(console, summary, {}, ("accuracy", "roc-auc"))
    text = " ".join(console.export_text().split())
    assert f"-: no federated figures at 'north', 'south': {NO_EVALUATION}" in text
    assert "cannot give it" not in text and NOT_COMPUTED["roc-auc"] not in text
    console = Console(record=True, width=200)
    print_comparison(console, comparison({"federated": {}}), {}, ("accuracy",))
    assert f"-: no federated figures at any site: {NO_EVALUATION}" in " ".join(console.export_text().split())


def test_the_mean_row_leaves_out_the_sites_whose_figures_are_unreliable():
    per_site = {"north": {"accuracy": 0.8, "num-examples": 40}, "tiny": {"accuracy": 0.2, "num-examples": 6}}
    summary = comparison({"federated": per_site})
    assert summary["federated"]["mean"]["accuracy"] == 0.5  # summary.json keeps the plain mean over every site
    console = Console(record=True, width=200)
    print_comparison(console, summary, {}, ("accuracy",), {"tiny": "held-out split of 6 rows"})
    row = next(line for line in console.export_text().splitlines() if "mean over" in line)
    assert "mean over reliable sites" in row and "0.800" in row
