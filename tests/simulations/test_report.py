"""medfed-sim's closing table: whole when piped or logged, never cut to 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from simulations.report import comparison, print_comparison


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
