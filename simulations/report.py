"""The simulation's closing comparison: federated vs pooled vs local, per site, printed and saved."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from server.history import weighted_mean
from server.loop import RoundReport
from server.saved import ONE_CLASS_MARK, UNRELIABLE

LISTED_SITES = 6  # past this many sites, round lines and the closing table summarise instead of listing
TABLE_SITES = 20  # past this many sites the closing table shows the means only
WIDEST_TABLE = 1000  # columns: the closing table's width when not printed to a terminal is its own, up to this
PRIVACY_COLUMNS = {"epsilon": "ε spent\n(local DP)", "mia-auc": "membership\nattack AUC"}
NO_EVALUATION = "no final evaluation came from there (the status above says why)"
NOT_COMPUTED = {"roc-auc": "it needs every class in the site's held-out split, and some class is absent there"}
ONE_CLASS_ADVICE = (
    "it predicts a single class on the site's held-out split, so its accuracy is that class's share: try more "
    "rounds or local epochs (--rounds, --local-epochs), check that site's label balance, "
    "and compare the AUC, which still shows whether the model ranks patients"
)


def comparison(methods: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Per method: per-site metrics, their plain mean over sites and the example-weighted mean."""
    out = {}
    for method, per_site in methods.items():
        mean = {k: _mean(per_site, k) for k in {k for m in per_site.values() for k in m} - {"num-examples"}}
        examples = {site: m.get("num-examples", 0.0) for site, m in per_site.items()}
        weighted = {**weighted_mean(per_site, examples), "num-examples": sum(examples.values())}
        out[method] = {"per_site": per_site, "mean": mean, "weighted": weighted}
    return out


def single_class_sites(summary: dict[str, Any]) -> dict[str, list[str]]:
    """Per method, the sites where its model predicted a single class on the held-out split (methods with none
    left out)."""
    flagged = {
        method: sorted(site for site, m in s["per_site"].items() if m.get("predicted-classes") == 1)
        for method, s in summary.items()
    }
    return {method: sites for method, sites in flagged.items() if sites}


def print_comparison(
    console: Console,
    summary: dict[str, Any],
    privacy: dict[str, dict[str, float]],
    shown: tuple[str, ...],
    caveats: dict[str, str] | None = None,
) -> None:
    """One row per site: the task's headline metrics per method, then the site's ε spent and attack AUC; a site
    whose held-out split is too small to score (`caveats`) shows "unreliable" instead of its figures, and a model
    predicting a single class at a site is marked, with what to try; a figure a site's split cannot give (`-`) is
    explained."""
    caveats = caveats or {}
    one_class = single_class_sites(summary)
    table = Table(title="Held-out test split at each site")
    table.add_column("site", no_wrap=True)
    for method in summary:
        for metric in shown:
            table.add_column(f"{method}\n{metric}", justify="right")
    extra = sorted({k for p in privacy.values() for k in p})
    for key in extra:
        table.add_column(PRIVACY_COLUMNS[key], justify="right")
    sites = sorted({s for m in summary.values() for s in m["per_site"]})
    if len(sites) > TABLE_SITES:
        table.caption = f"{len(sites)} sites: each site's row is in summary.json"
        sites = []
    for site in sites:
        table.add_row(
            site,
            *[
                UNRELIABLE
                if site in caveats
                else _fmt(m["per_site"].get(site, {}).get(k))
                + (ONE_CLASS_MARK if site in one_class.get(method, ()) else "")
                for method, m in summary.items()
                for k in shown
            ],
            *[_fmt(privacy.get(site, {}).get(k)) for k in extra],
        )
    reliable = {method: {s: f for s, f in m["per_site"].items() if s not in caveats} for method, m in summary.items()}
    table.add_row(
        "mean over reliable sites" if caveats else "mean over sites",
        *[_fmt(_mean(reliable[method], k)) for method in summary for k in shown],
        *["" for _ in extra],
        style="bold",
    )
    _print_whole(console, table)
    for site, why in sorted(caveats.items())[:LISTED_SITES]:
        console.print(
            f"[yellow]{UNRELIABLE}[/]: site '{site}': {why}; its figures (summary.json) mean little", highlight=False
        )
    if len(caveats) > LISTED_SITES:
        console.print(f"... and {len(caveats) - LISTED_SITES} more sites (summary.json: unreliable)", highlight=False)
    for method, m in summary.items():
        silent = [s for s in sites if s not in m["per_site"]]
        if silent or not m["per_site"]:
            where = f"at {_named(silent)}" if silent else "at any site"
            console.print(f"-: no {method} figures {where}: {NO_EVALUATION}", highlight=False)
    for metric in shown:
        blank = [
            s
            for s in sites
            if s not in caveats
            and any(s in m["per_site"] and m["per_site"][s].get(metric) is None for m in summary.values())
        ]
        if blank:
            why = NOT_COMPUTED.get(metric, "that site's held-out split cannot give it")
            console.print(f"-: no {metric} at {_named(blank)}: {why}", highlight=False)
    for method, sites in one_class.items():
        console.print(
            f"[yellow]{ONE_CLASS_MARK} one class[/]: the {method} model at {len(sites)} site(s) ({_named(sites)}): "
            f"{ONE_CLASS_ADVICE} (summary.json: single-class)",
            highlight=False,
        )


def _mean(per_site: dict[str, dict[str, float]], metric: str) -> float | None:
    """The plain mean of a metric over the sites that have it; None when none has."""
    values = [m[metric] for m in per_site.values() if m.get(metric) is not None]
    return sum(values) / len(values) if values else None


def _named(sites: list[str]) -> str:
    """The first sites by name, quoted, and "..." when there are more."""
    return ", ".join(f"'{s}'" for s in sites[:LISTED_SITES]) + (" ..." if len(sites) > LISTED_SITES else "")


def _print_whole(console: Console, table: Table) -> None:
    """Piped or logged, rich would fit the table to 80 columns and cut its headers ("feder…"): print it whole."""
    natural = console.measure(table, options=console.options.update_width(WIDEST_TABLE)).maximum
    if console.is_terminal or natural <= console.width:
        console.print(table)
        return
    before = console.width
    console.width = natural
    try:
        console.print(table)
    finally:
        console.width = before


def round_printer(console: Console, shown: tuple[str, str]) -> Any:
    """A progress callback printing one line per round with the task's two headline metrics; with many sites, the
    line summarises which took part and their ε instead of listing each."""

    def show(r: RoundReport) -> None:
        ev = r.evaluation
        line = (
            f"round {r.round:>3}/{r.rounds}  sites {r.accepted}/{r.sampled}  "
            f"train-loss {r.train.get('train-loss', float('nan')):.4f}  "
            f"| round-{r.evaluated_round} model: {shown[0]} {ev.get(shown[0], float('nan')):.3f} "
            f"{shown[1]} {ev.get(shown[1], float('nan')):.3f}  [{r.wall_s:.2f} s, {r.memory_gib:.1f} GiB]"
        )
        if r.epsilon:
            eps = sorted(r.epsilon.items())
            if len(eps) <= LISTED_SITES:
                line += f"  ε {' '.join(f'{site}={value:.2f}' for site, value in eps)}"
            else:
                values = sorted(value for _, value in eps)
                line += f"  ε median {values[len(values) // 2]:.2f} max {values[-1]:.2f}"
        console.print(line, highlight=False)
        if len(r.sites) > LISTED_SITES:
            more = len(r.sites) - LISTED_SITES
            console.print(f"  took part: {', '.join(r.sites[:LISTED_SITES])} and {more} more", highlight=False)
        for p in r.problems[:LISTED_SITES]:
            console.print(f"  [yellow]{p['event']}[/]: {p['site']}: {p['reason']}", highlight=False)
        if len(r.problems) > LISTED_SITES:
            console.print(f"  ... and {len(r.problems) - LISTED_SITES} more events (history.json)", highlight=False)

    return show


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
