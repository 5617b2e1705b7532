"""report.html: one self-contained page per study (figures inline as PNG), built from the study's saved outputs."""

from __future__ import annotations

import html
import logging
import math
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from server import figures
from server.history import WEIGHTED, site_epsilons
from server.modelcard import write_model_card
from server.outputs import StudyOutputs
from server.saved import ONE_CLASS_MARK, UNRELIABLE, SavedStudy
from shared.assessment import CURVE_POINTS
from shared.config import MIN_CELL
from shared.tasks import get_task

REPORT = "report.html"
FIRST_REFRESH_S = 20.0  # a study shorter than this gets its report at the end only
REFRESH_SHARE = 10  # drawing the report takes at most about a tenth of a running study's time
MODEL = "model.safetensors"
log = logging.getLogger("medfed.server")
# Marks on <body> how many of the page's figures the browser decoded: a check anyone can run, no network needed.
IMAGE_CHECK = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.figuresLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>"
)
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
    "td:first-child,th:first-child,.facts td{text-align:left}img{max-width:100%}.note{color:#555}"
)


def report_figures(saved: SavedStudy) -> dict[str, Figure]:
    """The report's figures by name, those the study has data for."""
    privacy = saved.study.privacy
    # Only the curves the study's task sends: a site cannot swap one kind of section for the other.
    scores = get_task(saved.study.task).curves == "scores"
    drawn = {
        "learning-curves": figures.learning_curves(saved.history["metrics"], saved.shown),
        "privacy": figures.epsilon_spent(saved.history["metrics"], privacy.epsilon) if privacy.mode != "off" else None,
        "roc-pr": figures.roc_pr(saved.assessments()) if scores else None,
        "calibration": figures.calibration(saved.assessments()) if scores else None,
        "survival": None if scores else figures.survival_curves(saved.assessments()),
        "comparison": figures.methods_compared(saved.summary, saved.shown[0], saved.unreliable, saved.one_class),
        "timing": figures.round_timing(saved.history["timings"]),
    }
    return {name: figure for name, figure in drawn.items() if figure is not None}


def render_report(saved: SavedStudy, pngs: dict[str, bytes]) -> str:
    """The whole page, with the figures drawn as `pngs` (by name) inline."""
    drawn = {name: figures.data_uri(png) for name, png in pngs.items()}
    study = saved.study
    parts = [
        f"<h1>Study '{_e(study.name)}'</h1>",
        f"<p class='note'>status: {_e(saved.history['status'])}. Every figure and number below is an aggregate a site "
        "sent or one computed from such aggregates; nothing is per patient.</p>",
        _section("study", "The study", _study_table(saved)),
        _section("learning", "Learning curves", _figure(drawn, "learning-curves", "No round finished yet.")),
        _section("privacy", "Privacy spent", _privacy_text(saved) + _figure(drawn, "privacy", "")),
        _section("final", "Final model at each site", _final_table(saved)),
        _curves_section(saved, drawn),
    ]
    if saved.summary:
        parts.append(_section("comparison", "Federated, pooled and local-only", _comparison(saved, drawn)))
    parts += [
        _section("events", "Events", _events_table(saved.history["events"])),
        _section("timing", "Round timing", _figure(drawn, "timing", "No round finished yet.") + _timing_table(saved)),
    ]
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(study.name)}: medfed report</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n{IMAGE_CHECK}</body></html>\n"
    )


def write_report(folder: Path, figures_dir: Path | None = None) -> Path:
    """Write report.html, and the model card once the folder holds a model, atomically from the folder's saved
    outputs (with `figures_dir`, each figure as a PNG there too); return the report's path."""
    saved = SavedStudy.read(folder)
    if (saved.folder / MODEL).is_file():
        write_model_card(saved)
    pngs = {name: figures.png_bytes(figure) for name, figure in report_figures(saved).items()}
    if figures_dir is not None:
        for name, png in pngs.items():
            StudyOutputs(figures_dir).write_bytes(f"{name}.png", png)
    return StudyOutputs(saved.folder).write_text(REPORT, render_report(saved, pngs))


class ReportRefresher:
    """Keeps a running study's report current at a bounded cost: after a round only once the study has run
    FIRST_REFRESH_S, then when at least REFRESH_SHARE times the last drawing's time has passed; always at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.due = time.monotonic() + FIRST_REFRESH_S

    def after_round(self) -> None:
        """Redraw if it is due."""
        if time.monotonic() >= self.due:
            self.draw()

    def draw(self) -> None:
        """Redraw now; a report that cannot be drawn is logged and never stops the study."""
        started = time.monotonic()
        if not (self.folder / "history.json").is_file():  # stopped before its first round: nothing to show
            return
        try:
            write_report(self.folder)
        except Exception as exc:  # the study's own outputs are written already; the report is a view of them
            log.warning("report.html not refreshed: %s (%s)", exc, type(exc).__name__)
        self.due = time.monotonic() + REFRESH_SHARE * (time.monotonic() - started)


def _study_table(saved: SavedStudy) -> str:
    study, fed, privacy = saved.study, saved.study.federation, saved.study.privacy
    examples = saved.train_examples()
    dp = "off" if privacy.mode == "off" else f"{privacy.mode}, ε = {privacy.epsilon:g}, δ = {privacy.delta:g}"
    rows = [
        ("task", study.task),
        ("model", study.model.get("name", "")),
        ("strategy", fed.strategy),
        ("rounds", f"{fed.rounds} × {study.train.local_epochs} local epoch(s)" if fed.rounds else "0: evaluation only"),
        ("differential privacy", dp),
        ("secure aggregation (SecAgg+)", "on" if study.secure_aggregation(saved.deployed) else "off"),
        ("run as", "a federation" if saved.deployed else "a simulation"),
        ("sites (training examples)", ", ".join(f"{s} ({n})" for s, n in sorted(examples.items())) or "-"),
    ]
    if fed.initial_model:
        rows.insert(4, ("initial model", f"{Path(fed.initial_model).name}, SHA-256 {fed.initial_model_sha256}"))
    return _table(["", ""], rows, css="facts")


def _privacy_text(saved: SavedStudy) -> str:
    privacy = saved.study.privacy
    if privacy.mode == "off":
        return "<p>No differential privacy in this study.</p>"
    spent = site_epsilons(saved.history["metrics"])
    rows = [(site, f"{eps:.3f}", f"{privacy.epsilon:g}") for site, eps in sorted(spent.items())]
    return (
        _table(["site", "ε spent in this study", "study budget"], rows)
        + "<p class='note'>A site's lifetime spend over all studies stays in its own ledger (medfed-site ledger).</p>"
    )


def _final_table(saved: SavedStudy) -> str:
    final, assessed = saved.final(), saved.assessments()
    if not final:
        return "<p>No site has evaluated a final model yet.</p>"
    shown = saved.shown
    rows = []
    for site, metrics in sorted(final.items(), key=lambda item: item[0] == WEIGHTED):
        cells = [_with_ci(metrics.get(m), assessed.get(site, {}), m) for m in shown]
        rows.append((site, *cells, f"{metrics.get('num-examples', 0):.0f}"))
    note = "<p class='note'>95 % bootstrap intervals, each computed by the site on its own held-out split.</p>"
    return _table(["site", *shown, "held-out examples"], rows) + note


def _comparison(saved: SavedStudy, drawn: dict[str, str]) -> str:
    """The closing table's figures, with its marks: a site too small to score shows "unreliable", and a model that
    predicts a single class at a site is starred, each with why."""
    summary, shown, unreliable, one_class = saved.summary, saved.shown, saved.unreliable, saved.one_class
    methods = [m for m in ("federated", "pooled", "local") if m in summary]
    sites = sorted({s for m in methods for s in summary[m]["per_site"]})

    def cell(method: str, site: str, metric: str) -> str:
        if site in unreliable:
            return UNRELIABLE
        figure = _num(summary[method]["per_site"].get(site, {}).get(metric))
        return figure + (ONE_CLASS_MARK if site in one_class.get(method, ()) else "")

    rows = [(s, *(cell(m, s, k) for m in methods for k in shown)) for s in sites]
    header = ["site", *(f"{m} {k}" for m in methods for k in shown)]
    notes = [f"{UNRELIABLE}: site '{site}': {why}" for site, why in sorted(unreliable.items())]
    advice = summary.get("single-class", {}).get("try", "")
    notes += [
        f"{ONE_CLASS_MARK} the {m} model predicts one class at {', '.join(one_class[m])}: {advice}" for m in one_class
    ]
    return (
        _figure(drawn, "comparison", "") + _table(header, rows) + "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)
    )


def _curves_section(saved: SavedStudy, drawn: dict[str, str]) -> str:
    """Survival curves for a task that sends them, else ROC, precision-recall and calibration from score bins."""
    if get_task(saved.study.task).curves == "survival":
        return _section(
            "curves",
            "Survival curves",
            "<p class='note'>Each site sends its held-out split's Kaplan–Meier survival and the model's mean predicted "
            f"survival at {CURVE_POINTS} times up to the study's last horizon; a Kaplan–Meier value with fewer "
            f"patients at risk than the study's data.km-min-at-risk (never under {MIN_CELL}) is suppressed at the site "
            "and missing here.</p>"
            + _figure(
                drawn, "survival", "No site sent survival curves (a study with no horizons or cut points has none)."
            ),
        )
    return _section(
        "curves",
        "ROC, precision-recall and calibration",
        f"<p class='note'>Each site sends counts per score bin; bins of fewer than report.min-cell = "
        f"{saved.study.report.min_cell} patients are merged with their neighbours before they leave the site.</p>"
        + _figure(drawn, "roc-pr", "")
        + _figure(
            drawn,
            "calibration",
            "No site sent score bins (a task without class scores, or too few held-out patients).",
        ),
    )


def _events_table(events: list[dict[str, Any]]) -> str:
    if not events:
        return "<p>No refusals, rejections, timeouts or resumes.</p>"
    return _table(
        ["round", "site", "event", "reason"], [(e["round"], e["site"], e["event"], e["reason"]) for e in events]
    )


def _timing_table(saved: SavedStudy) -> str:
    rows = [
        (t["round"], _num(t.get("wall-s")), _num(t.get("max-site-compute-s")), _num(t.get("overhead-s")))
        for t in saved.history["timings"]
    ]
    return _table(["round", "wall (s)", "slowest site's compute (s)", "overhead (s)"], rows) if rows else ""


def _with_ci(value: float | None, assessment: dict[str, Any], metric: str) -> str:
    low, high = assessment.get(f"ci-{metric}-low"), assessment.get(f"ci-{metric}-high")
    return _num(value) + (f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else "")


def _figure(drawn: dict[str, str], name: str, missing: str) -> str:
    if name in drawn:
        return f"<p><img src='{drawn[name]}' alt='{name}'></p>"
    return f"<p class='note'>{missing}</p>" if missing else ""


def _section(anchor: str, title: str, content: str) -> str:
    return f"<section id='{anchor}'><h2>{_e(title)}</h2>\n{content}\n</section>"


def _table(header: list[str], rows: list[tuple], css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><tr>{head}</tr>{body}</table>"


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _e(value: Any) -> str:
    return html.escape(str(value))
