"""The report's figures, drawn with matplotlib from a study's saved outputs (no pyplot: no global state, any thread)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from server.history import WEIGHTED

DPI = 96
SITE_STYLE = {"linewidth": 1.2, "alpha": 0.8}
WEIGHTED_STYLE = {"color": "black", "linewidth": 2.4, "label": "weighted"}


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as an inline `data:` URI, for a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def learning_curves(rows: list[dict[str, Any]], shown: tuple[str, ...]) -> Figure | None:
    """Training loss per round, and each headline metric of the global model per round, per site and weighted."""
    panels = [("train", "train-loss", "training loss")] + [("eval", m, f"{m} (held-out)") for m in shown]
    panels = [p for p in panels if any(r["kind"] == p[0] and p[1] in r for r in rows)]
    if not panels:
        return None
    figure = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    for ax, (kind, metric, title) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for site, points in _series(rows, kind, metric).items():
            style = WEIGHTED_STYLE if site == WEIGHTED else {**SITE_STYLE, "label": site}
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, **style)
        ax.set(title=title, xlabel="round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _legend(figure)
    return figure


def epsilon_spent(rows: list[dict[str, Any]], budget: float) -> Figure | None:
    """ε spent per site after each round (local DP; the server's for central DP) against the study's budget."""
    series = _series(rows, "train", "dp-epsilon") | _series(rows, "privacy", "epsilon")
    series.pop(WEIGHTED, None)
    if not series:
        return None
    figure = Figure(figsize=(6, 3.4), layout="constrained")
    ax = figure.subplots()
    for site, points in series.items():
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=site, **SITE_STYLE)
    ax.axhline(budget, color="firebrick", linestyle="--", label=f"budget ε = {budget:g}")
    ax.set(title="privacy spent (ε)", xlabel="round", ylabel="ε", ylim=(0, budget * 1.1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend(figure)
    return figure


def roc_pr(assessments: dict[str, dict[str, Any]]) -> Figure | None:
    """ROC and precision-recall curves per site, at the score-bin edges the sites released."""
    curves = {site: _rates(a) for site, a in assessments.items() if "bins-edges" in a and not a.get("bins-top-label")}
    curves = {site: c for site, c in curves.items() if c is not None}
    if not curves:
        return None
    figure = Figure(figsize=(8.4, 3.6), layout="constrained")
    roc, pr = figure.subplots(1, 2)
    for site, (fpr, tpr, precision) in curves.items():
        roc.plot(fpr, tpr, marker="o", markersize=3, label=site, **SITE_STYLE)
        kept = ~np.isnan(precision)
        pr.plot(tpr[kept], precision[kept], marker="o", markersize=3, **SITE_STYLE)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set(title="ROC", xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02))
    pr.set(title="precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
    _legend(figure)
    return figure


def calibration(assessments: dict[str, dict[str, Any]]) -> Figure | None:
    """Observed rate against the predicted probability's bin, per site (the top class's when multi-class)."""
    sites = {site: a for site, a in assessments.items() if "bins-edges" in a}
    if not sites:
        return None
    figure = Figure(figsize=(4.6, 4), layout="constrained")
    ax = figure.subplots()
    for site, a in sites.items():
        edges, pos, neg = (np.asarray(a[k], dtype=float) for k in ("bins-edges", "bins-positive", "bins-negative"))
        middle = (edges[:-1] + edges[1:]) / 2
        ax.plot(middle, pos / np.maximum(pos + neg, 1), marker="o", label=site, **SITE_STYLE)
    top = any(a.get("bins-top-label") for a in sites.values())
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(
        title="calibration",
        xlabel="predicted probability (bin centre)" + (", top class" if top else ""),
        ylabel="observed rate" + (" of being right" if top else " of the positive class"),
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    _legend(figure)
    return figure


def survival_curves(assessments: dict[str, dict[str, Any]]) -> Figure | None:
    """Each site's Kaplan–Meier survival on its held-out split (solid, steps; suppressed values left out) next to the
    model's mean predicted survival there (dashed), on the study's fixed time grid."""
    sites = {site: a for site, a in assessments.items() if "curve-times" in a}
    if not sites:
        return None
    figure = Figure(figsize=(6.4, 4), layout="constrained")
    ax = figure.subplots()
    for site, a in sites.items():
        times, km, predicted = (np.asarray(a[k], dtype=float) for k in ("curve-times", "curve-km", "curve-predicted"))
        shown = km >= 0
        (line,) = ax.step(
            np.concatenate([[0.0], times[shown]]),
            np.concatenate([[1.0], km[shown]]),
            where="post",
            label=site,
            **SITE_STYLE,
        )
        ax.plot(
            np.concatenate([[0.0], times]),
            np.concatenate([[1.0], predicted]),
            color=line.get_color(),
            linestyle="--",
            **SITE_STYLE,
        )
    ax.set(
        title="survival: Kaplan–Meier (solid) and the model (dashed)", xlabel="time", ylabel="survival", ylim=(0, 1.02)
    )
    ax.grid(alpha=0.3)
    _legend(figure)
    return figure


def methods_compared(
    summary: dict[str, Any], metric: str, unreliable: dict[str, str], one_class: dict[str, list[str]]
) -> Figure | None:
    """The simulation's federated, pooled and local-only models per site, on one metric; no bars for an `unreliable`
    site, and a hatched one where a model predicts a single class (`one_class`, per method)."""
    methods = [m for m in ("federated", "pooled", "local") if m in summary]
    sites = sorted({s for m in methods for s in summary[m]["per_site"]})
    if len(methods) < 2 or not sites:
        return None
    figure = Figure(figsize=(max(5.0, 1.2 * len(sites) + 2), 3.4), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [
            np.nan if s in unreliable else summary[method]["per_site"].get(s, {}).get(metric, np.nan) for s in sites
        ]
        at = np.arange(len(sites)) + i * width
        ax.bar(at, values, width, label=method)
        hatched = [k for k, s in enumerate(sites) if s in one_class.get(method, ()) and s not in unreliable]
        if hatched:  # drawn over the bars, unlabelled, so that the legend's swatch stays plain
            ax.bar(at[hatched], np.asarray(values)[hatched], width, fill=False, hatch="//")
    ax.set_xticks(np.arange(len(sites)) + width * (len(methods) - 1) / 2, sites)
    ax.set(title=f"{metric} on each site's held-out split", ylabel=metric)
    said = ["hatched: the model predicts one class there"] if one_class else []
    said += ["no bars: the site is too small to score"] if unreliable else []
    ax.set_xlabel("; ".join(said) + (" (see the table)" if said else ""))
    ax.grid(alpha=0.3, axis="y")
    _legend(figure)
    return figure


def round_timing(timings: list[dict[str, Any]]) -> Figure | None:
    """Each round's wall time, split into the slowest site's compute and the rest (communication, server work)."""
    if not timings:
        return None
    figure = Figure(figsize=(6, 3.2), layout="constrained")
    ax = figure.subplots()
    rounds = [t["round"] for t in timings]
    compute = [t.get("max-site-compute-s", 0.0) for t in timings]
    overhead = [max(0.0, t.get("overhead-s", 0.0)) for t in timings]
    ax.bar(rounds, compute, label="slowest site's compute")
    ax.bar(rounds, overhead, bottom=compute, label="overhead")
    ax.set(title="round wall time", xlabel="round", ylabel="seconds")
    ax.grid(alpha=0.3, axis="y")
    _legend(figure)
    return figure


def _series(rows: list[dict[str, Any]], kind: str, metric: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        value = r.get(metric)
        if r["kind"] == kind and isinstance(value, int | float) and np.isfinite(value):
            out.setdefault(r["site"], []).append((r["round"], float(value)))
    return dict(sorted(out.items(), key=lambda item: item[0] == WEIGHTED))  # the weighted line drawn last, on top


def _rates(assessment: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """False and true positive rates and precision at each bin edge, from the highest threshold down."""
    pos, neg = (np.asarray(assessment[k], dtype=float)[::-1] for k in ("bins-positive", "bins-negative"))
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    tp, fp = np.concatenate([[0], np.cumsum(pos)]), np.concatenate([[0], np.cumsum(neg)])
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
    return fp / neg.sum(), tp / pos.sum(), precision


def _legend(figure: Figure) -> None:
    handles, labels = figure.axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize="small", frameon=False)
