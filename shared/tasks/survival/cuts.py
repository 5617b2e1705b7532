"""The federated cut-point step: each site counts its train split's event times on the study's fixed grid, and the
server sums the counts and ends the discrete-time model's intervals at their quantiles. No row leaves a site."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from shared.tasks.survival.spec import SurvivalSpec, quantile_levels, rounded_times

HISTOGRAM = "event-histogram"  # the reply's metric: one event count per grid bin
MAX_SITE_EVENTS = 10_000_000  # a larger count in a site's histogram is not a site's count of patients


def grid_edges(spec: SurvivalSpec) -> np.ndarray:
    """The grid's bin edges 0 = e0 < e1 < ... < eB = data.cut-grid-max."""
    return np.linspace(0.0, spec.cut_grid_max, spec.cut_grid_bins + 1)


def event_histogram(spec: SurvivalSpec, outcome: torch.Tensor) -> list[int]:
    """A site's event counts in the bins (e0, e1], (e1, e2], ...; a time past the grid counts in its last bin and a
    time of 0 in its first."""
    outcome = outcome.double().numpy()
    times = outcome[outcome[:, 1] > 0.5, 0]
    bins = np.clip(np.searchsorted(grid_edges(spec), times, side="left") - 1, 0, spec.cut_grid_bins - 1)
    return np.bincount(bins, minlength=spec.cut_grid_bins).tolist()


def histogram_problem(spec: SurvivalSpec, answer: dict[str, Any]) -> str | None:
    """Why a site's answer cannot be summed (None: it can): it must hold one count per grid bin, each a plausible
    number of patients."""
    counts = answer.get(HISTOGRAM)
    if not isinstance(counts, list) or len(counts) != spec.cut_grid_bins:
        return f"'{HISTOGRAM}' must list {spec.cut_grid_bins} counts (data.cut-grid-bins)"
    if any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= MAX_SITE_EVENTS for c in counts):
        return f"'{HISTOGRAM}' must hold whole counts in [0, {MAX_SITE_EVENTS}]"
    return None


def quantile_cuts(spec: SurvivalSpec, counts: np.ndarray) -> list[float]:
    """Interval ends at the event-time quantiles of summed histogram counts, each read linearly inside its bin."""
    edges, cumulative = grid_edges(spec), np.concatenate([[0], np.cumsum(counts)])
    targets = quantile_levels(spec.cut_intervals) * cumulative[-1]
    bins = np.searchsorted(cumulative[1:], targets, side="left")  # the bin where each quantile's event falls
    inside = (targets - cumulative[bins]) / np.maximum(np.asarray(counts)[bins], 1)
    return rounded_times(edges[bins] + inside * (edges[1] - edges[0]))
