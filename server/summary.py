"""The study's closing summary as plain lines: status, final metrics per site and weighted, ε, site events."""

from __future__ import annotations

from pathlib import Path

from server.history import WEIGHTED, History, final_site_metrics, site_epsilons

NO_SITE = "-"  # events of the study itself (resumed, stopped), not of a site


def summary_lines(name: str, history: History, folder: Path, shown: tuple[str, ...]) -> list[str]:
    """What the operator reads at the end of `medfed-server submit`: one line each, no colours, no wrapping."""
    lines = [f"study '{name}' {history.status}", f"outputs: {folder}"]
    final = final_site_metrics(history.rows, weighted=True)
    if final:
        lines += _metrics_table(final, site_epsilons(history.rows), shown)
    else:
        lines.append("no site evaluated a model")
    lines += _site_events(history.events)
    return lines


def _metrics_table(final: dict[str, dict[str, float]], spent: dict[str, float], shown: tuple[str, ...]) -> list[str]:
    mean = final.pop(WEIGHTED, {})
    rows = {**{site: {**m, "ε spent": spent.get(site)} for site, m in sorted(final.items())}, WEIGHTED: mean}
    columns = [*shown, "num-examples"] + (["ε spent"] if spent else [])
    width = max(len(site) for site in rows)
    header = "  ".join([f"{'site':<{width}}", *(f"{c:>12}" for c in columns)])
    body = ["  ".join([f"{site:<{width}}", *(_cell(m.get(c), c) for c in columns)]) for site, m in rows.items()]
    return ["final model on each site's held-out split:", header, *body]


def _cell(value: float | None, column: str) -> str:
    if value is None:
        return f"{'-':>12}"
    return f"{value:>12.0f}" if column == "num-examples" else f"{value:>12.3f}"


def _site_events(events: list[dict]) -> list[str]:
    """Each site's events once per reason (a site refusing every round says so once), as the server received them."""
    rounds: dict[tuple[str, str, str], list[int]] = {}
    for e in events:
        if e["site"] != NO_SITE:
            rounds.setdefault((e["site"], e["event"], e["reason"]), []).append(e["round"])
    if not rounds:
        return []
    lines = ["site events:"]
    for (site, event, reason), seen in sorted(rounds.items()):
        distinct = sorted(set(seen))  # a round's several stages (SecAgg+, the final evaluation) count once
        label = "round" if len(distinct) == 1 else "rounds"
        lines.append(f"  {site} {event} ({label} {', '.join(map(str, distinct))}): {reason}")
    return lines
