"""The federated cut-point step: site histograms summed at the server give the pooled event-time quantiles, and
every answer is bounded before it is summed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import ConfigError
from shared.tasks.survival import TASK
from shared.tasks.survival.cuts import HISTOGRAM, event_histogram, histogram_problem, quantile_cuts
from shared.tasks.survival.spec import data_spec, event_time_cuts
from tests.shared.tasks.survival.tables import survival_study, survival_table

GRID = {"cut-points": [], "cut-grid-max": 3000.0, "cut-grid-bins": 300, "cut-intervals": 8}


def outcome(table) -> torch.Tensor:
    """A site's outcome rows (time, event), as its train split holds them."""
    return torch.tensor(table[["days", "died"]].to_numpy(float), dtype=torch.float32)


def test_summed_site_histograms_give_the_pooled_event_time_quantiles_within_a_bin():
    study = survival_study("discrete", **GRID)
    spec = data_spec(study)
    sites = [survival_table(n, seed=s, effect=e) for n, s, e in ((300, 1, 0.5), (120, 2, 1.5), (60, 3, 1.0))]
    answers = [{HISTOGRAM: event_histogram(spec, outcome(t))} for t in sites]
    assert all(histogram_problem(spec, a) is None for a in answers)
    federated = TASK.complete_study(study, answers)
    pooled = np.concatenate([t.loc[t["died"] == 1, "days"].to_numpy(float) for t in sites])
    expected = event_time_cuts(pooled, 8)
    cuts = data_spec(federated).cut_points
    assert len(cuts) == len(expected) == 8
    width = 3000.0 / 300
    # Linear reading inside a 10-day bin and three significant digits: within a bin and the rounding of each.
    assert np.all(np.abs(np.array(cuts) - expected) <= width + 0.005 * np.array(expected))
    assert TASK.needs_setup(study) and not TASK.needs_setup(federated)
    TASK.check_study(federated)


def test_event_times_past_the_grid_or_at_zero_fall_in_its_end_bins_and_censored_rows_in_none():
    spec = data_spec(survival_study("discrete", **GRID))
    rows = torch.tensor([[0.0, 1.0], [5.0, 1.0], [10.0, 1.0], [10.5, 1.0], [9000.0, 1.0], [20.0, 0.0]])
    counts = event_histogram(spec, rows)
    assert len(counts) == 300 and sum(counts) == 5
    assert counts[0] == 3 and counts[1] == 1 and counts[-1] == 1


@pytest.mark.parametrize(
    "counts",
    [[1] * 299, [1] * 301, [-1] + [0] * 299, [0.5] + [0] * 299, [True] + [0] * 299, [10**9] + [0] * 299, "1,2"],
)
def test_a_hostile_histogram_is_refused_before_it_is_summed(counts):
    spec = data_spec(survival_study("discrete", **GRID))
    assert HISTOGRAM in histogram_problem(spec, {HISTOGRAM: counts})


def test_quantile_cuts_of_a_single_bin_stay_inside_it():
    spec = data_spec(survival_study("discrete", **GRID))
    counts = np.zeros(300, dtype=int)
    counts[41] = 7
    cuts = quantile_cuts(spec, counts)
    assert all(410 <= c <= 420 for c in cuts) and cuts == sorted(set(cuts))


@pytest.mark.parametrize(
    ("grid", "field"),
    [
        ({"cut-grid-bins": 5000}, "data.cut-grid-bins"),
        ({"cut-grid-max": float("inf")}, "data.cut-grid-max"),
        ({"cut-intervals": 400}, "data.cut-intervals"),
    ],
)
def test_a_study_cannot_size_the_grid_beyond_its_bounds(grid, field):
    with pytest.raises(ConfigError, match=field):
        data_spec(survival_study("discrete", **{**GRID, **grid}))


def test_a_discrete_study_without_cut_points_or_a_grid_is_refused_and_no_model_is_built_without_cut_points():
    with pytest.raises(ConfigError, match="data.cut-grid-max"):
        TASK.check_study(survival_study("discrete", **{"cut-points": []}))
    with pytest.raises(ConfigError, match="data.cut-points"):
        TASK.build_model(survival_study("discrete", **GRID))


def test_no_events_anywhere_is_a_clear_error():
    study = survival_study("discrete", **GRID)
    with pytest.raises(ConfigError, match="no site reported an event"):
        TASK.complete_study(study, [{HISTOGRAM: [0] * 300}])
