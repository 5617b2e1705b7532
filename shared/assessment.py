"""A site's final assessment for the study's report: bootstrap CIs, score-bin counts, class counts and survival
curves, all aggregates.

The site computes it once, on the final evaluation, from its held-out split. Only intervals, counts and curves leave
the site: score bins on a grid fixed here (never by the study), merged until each holds at least `report.min-cell`
patients; class counts with small cells (and the cell that would give them away) suppressed; a survival split's
Kaplan–Meier values at CURVE_POINTS times, each suppressed where few patients remain at risk, and the model's mean
predicted survival there. The server reads a site's record back through `read_assessment`, which bounds every list
and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

BOOTSTRAP_REPLICATES = 200  # fixed by the site's code: the study cannot make a site's final evaluation longer
CI_LEVEL = 0.95
SCORE_BINS = 20  # the finest score grid a site releases: bins of width 0.05 over [0, 1]
CURVE_POINTS = 20  # the times a survival site's Kaplan–Meier and predicted curves are released at
MAX_CLASSES = 1000  # bound on the class counts the server accepts from a site
SUPPRESSED = -1  # a class count not released (under min-cell, or one that would give such a count away)
FINAL_FLAG = "final-assessment"  # the evaluate config key by which the server asks for the final assessment
RECORD = "assessment"  # the reply's MetricRecord holding it
CURVES = ("curve-times", "curve-km", "curve-predicted")

Metrics = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]


def bootstrap_ci(
    y_true: np.ndarray, scores: np.ndarray, metrics: Metrics, names: tuple[str, ...], seed: int
) -> dict[str, float]:
    """`ci-<name>-low` / `-high`: the percentile bootstrap interval of each metric over resampled held-out rows;
    a metric defined in fewer than half the replicates gets none."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    drawn: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(BOOTSTRAP_REPLICATES):
        rows = rng.integers(0, n, n)
        values = metrics(y_true[rows], scores[rows])
        for name in names:
            if name in values and math.isfinite(values[name]):
                drawn[name].append(float(values[name]))
    tail = 100 * (1 - CI_LEVEL) / 2
    out = {}
    for name, values in drawn.items():
        if len(values) >= BOOTSTRAP_REPLICATES / 2:
            low, high = np.percentile(values, [tail, 100 - tail])
            out[f"ci-{name}-low"], out[f"ci-{name}-high"] = float(low), float(high)
    return out


def score_bins(scores: np.ndarray, positive: np.ndarray, min_cell: int) -> dict[str, list]:
    """Positive and negative counts per score bin: the fixed grid's bins merged upward until each holds at least
    `min_cell` patients (a short last run joins the bin below), so no bin of fewer is released, not even by
    subtraction from the totals. Fewer than `min_cell` patients in all: nothing."""
    if len(scores) < min_cell:
        return {}
    grid = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    index = np.clip(np.digitize(scores, grid[1:-1]), 0, SCORE_BINS - 1)
    pos = np.bincount(index, weights=positive.astype(float), minlength=SCORE_BINS).astype(int)
    total = np.bincount(index, minlength=SCORE_BINS)
    edges, pos_out, neg_out = [0.0], [], []
    run_pos = run_total = 0
    for i in range(SCORE_BINS):
        run_pos, run_total = run_pos + int(pos[i]), run_total + int(total[i])
        if run_total >= min_cell:
            edges.append(float(grid[i + 1]))
            pos_out.append(run_pos)
            neg_out.append(run_total - run_pos)
            run_pos = run_total = 0
    edges[-1] = 1.0  # the top bins' short (or empty) run joins the last released bin
    pos_out[-1] += run_pos
    neg_out[-1] += run_total - run_pos
    return {"bins-edges": edges, "bins-positive": pos_out, "bins-negative": neg_out}


def class_counts(labels: np.ndarray, n_classes: int, min_cell: int) -> list[int]:
    """Rows per class; a count under `min_cell` (but above 0) is suppressed, and so is the next smallest count, so
    that the total (which the site sends as num-examples) cannot give a suppressed count back."""
    counts = np.bincount(labels.astype(int).reshape(-1), minlength=n_classes)[:n_classes].tolist()
    small = [i for i, c in enumerate(counts) if 0 < c < min_cell]
    if len(small) == 1:
        rest = sorted((c, i) for i, c in enumerate(counts) if i not in small and c > 0)
        small += [rest[0][1]] if rest else []
    return [SUPPRESSED if i in small else int(c) for i, c in enumerate(counts)]


def classification_assessment(
    y_true: np.ndarray,
    probs: np.ndarray,
    train_labels: np.ndarray,
    metrics: Metrics,
    names: tuple[str, ...],
    min_cell: int,
    seed: int,
) -> dict[str, Any]:
    """CIs, score bins and class counts of a classifier: bins of the positive class's probability when binary, of
    the top class's probability against being right when multi-class."""
    if probs.shape[1] == 2:
        scores, positive, top = probs[:, 1], y_true == 1, 0
    else:
        scores, positive, top = probs.max(axis=1), probs.argmax(axis=1) == y_true, 1
    out: dict[str, Any] = bootstrap_ci(y_true, probs, metrics, names, seed)
    bins = score_bins(scores, positive, min_cell)
    if bins:
        out |= {**bins, "bins-top-label": top}
    out["class-counts"] = class_counts(train_labels, probs.shape[1], min_cell)
    return out


def read_assessment(record: Mapping[str, Any]) -> dict[str, Any]:
    """A site's assessment record as the server keeps it; anything malformed or out of bounds raises ValueError
    naming the key (a site's reply is not trusted)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key.startswith("ci-"):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number")
            out[key] = float(value)
        elif key == "bins-top-label":
            out[key] = _bounded_int(key, value, 0, 1)
        elif key in ("bins-edges", "bins-positive", "bins-negative", "class-counts", *CURVES):
            out[key] = _bounded_list(key, value)
        else:
            raise ValueError(f"'{key[:40]}' is not part of an assessment")
    bins = [out.get(k) for k in ("bins-edges", "bins-positive", "bins-negative")]
    if any(b is not None for b in bins):
        edges, pos, neg = bins
        if edges is None or pos is None or neg is None or not len(pos) == len(neg) == len(edges) - 1 or not pos:
            raise ValueError("bins-edges, bins-positive and bins-negative must come together, one edge more")
        if edges[0] != 0.0 or edges[-1] != 1.0 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError("bins-edges must rise from 0 to 1")
        if any(not float(c).is_integer() or c < 0 for c in pos + neg):
            raise ValueError("bin counts must be whole numbers >= 0")
    if any(c != SUPPRESSED and (not float(c).is_integer() or c < 0) for c in out.get("class-counts", [])):
        raise ValueError("class-counts must be whole numbers >= 0, or -1 (suppressed)")
    _check_curves(out)
    return out


def _check_curves(out: dict[str, Any]) -> None:
    curves = [out.get(k) for k in CURVES]
    if all(c is None for c in curves):
        return
    times, km, predicted = curves
    if times is None or km is None or predicted is None or not len(times) == len(km) == len(predicted) > 0:
        raise ValueError(f"{', '.join(CURVES)} must come together, of one length")
    if times[0] <= 0 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("curve-times must be positive and rise")
    if any(v != SUPPRESSED and not 0 <= v <= 1 for v in km) or not all(0 <= v <= 1 for v in predicted):
        raise ValueError("curve-km and curve-predicted must be survival probabilities in [0, 1] (-1: suppressed)")


def _bounded_int(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}")
    return value


def _bounded_list(key: str, value: Any) -> list[float]:
    limit = MAX_CLASSES if key == "class-counts" else CURVE_POINTS if key in CURVES else SCORE_BINS + 1
    if not isinstance(value, list) or len(value) > limit:
        raise ValueError(f"{key} must be a list of at most {limit} values")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"{key} must hold finite numbers")
    return list(value)
