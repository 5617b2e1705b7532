"""A site's final assessment: small cells never released, work bounded, and the server's reading of it bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from shared.assessment import (
    BOOTSTRAP_REPLICATES,
    SCORE_BINS,
    SUPPRESSED,
    bootstrap_ci,
    class_counts,
    read_assessment,
    score_bins,
)
from shared.metrics import classification_metrics, headline_metrics
from shared.tasks import SiteData, build_model, get_task

GRID = set(np.round(np.linspace(0, 1, SCORE_BINS + 1), 10))


@pytest.mark.parametrize("seed", range(5))
def test_every_released_bin_holds_min_cell_patients_and_all_of_them_together(seed):
    rng = np.random.default_rng(seed)
    scores, positive = rng.beta(0.5, 0.5, 23), rng.random(23) < 0.4
    bins = score_bins(scores, positive, min_cell=5)
    totals = np.add(bins["bins-positive"], bins["bins-negative"])
    assert (totals >= 5).all() and totals.sum() == 23 and sum(bins["bins-positive"]) == positive.sum()
    assert set(np.round(bins["bins-edges"], 10)) <= GRID and bins["bins-edges"][0] == 0 and bins["bins-edges"][-1] == 1
    fine = np.histogram(scores, np.linspace(0, 1, SCORE_BINS + 1))[0]
    assert ((fine > 0) & (fine < 5)).any()  # the fine grid had small cells: they were merged, never released alone
    read_assessment(bins)  # what a site sends, the server accepts


def test_a_held_out_split_under_min_cell_releases_no_bins():
    assert score_bins(np.array([0.1, 0.2, 0.9, 0.95]), np.array([0, 0, 1, 1]), min_cell=5) == {}


def test_a_tiny_held_out_split_gets_its_bins_merged_at_the_site(tmp_path):
    task = get_task("tabular")
    study = task.demo_study()
    torch.manual_seed(0)
    x = torch.randn(9, len(study.data["features"]))
    data = SiteData(
        TensorDataset(x, torch.tensor([0, 1] * 4 + [0])), TensorDataset(x[:7], torch.tensor([0, 1] * 3 + [0]))
    )
    assessment = task.assess(study, build_model(study), data, torch.device("cpu"))
    assert assessment["bins-edges"] == [0.0, 1.0]  # 7 patients: one bin, whatever their scores
    assert assessment["bins-positive"] == [3] and assessment["bins-negative"] == [4]
    assert assessment["class-counts"] == [SUPPRESSED, SUPPRESSED]  # 5 and 4: one small, the other would give it away


@pytest.mark.parametrize(
    ("labels", "counts"),
    [
        ([0] * 3 + [1] * 40, [SUPPRESSED, SUPPRESSED]),
        ([0] * 3 + [1] * 40 + [2] * 50, [SUPPRESSED, SUPPRESSED, 50]),
        ([0] * 10 + [1] * 20, [10, 20]),
        ([1] * 20, [0, 20]),
    ],
)
def test_a_small_class_count_and_the_one_that_would_reveal_it_are_suppressed(labels, counts):
    assert class_counts(np.array(labels), len(counts), min_cell=5) == counts


def test_the_bootstrap_is_bounded_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    probs = np.clip(np.stack([1 - y, y], 1) * 0.6 + rng.random((60, 2)) * 0.4, 0, 1)
    probs /= probs.sum(1, keepdims=True)
    calls = []

    def metrics(a, b):
        calls.append(1)
        return headline_metrics(a, b)

    ci = bootstrap_ci(y, probs, metrics, ("accuracy", "roc-auc"), seed=3)
    assert len(calls) == BOOTSTRAP_REPLICATES  # fixed by the site's code, whatever the study says
    assert ci == bootstrap_ci(y, probs, headline_metrics, ("accuracy", "roc-auc"), seed=3)
    point = classification_metrics(y, probs)
    for name in ("accuracy", "roc-auc"):
        assert ci[f"ci-{name}-low"] <= point[name] <= ci[f"ci-{name}-high"] < 1.0001


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"bins-edges": [0.0, 0.5, 1.0], "bins-positive": [1], "bins-negative": [5, 5]}, "come together"),
        ({"bins-edges": [0.0, 0.7, 0.5, 1.0], "bins-positive": [1, 1, 1], "bins-negative": [5, 5, 5]}, "rise"),
        ({"bins-edges": [i / 100 for i in range(101)]}, "at most"),
        ({"ci-accuracy-low": float("nan")}, "finite"),
        ({"class-counts": [3.5, 2]}, "whole numbers"),
        ({"per-patient-scores": [0.1, 0.2]}, "not part of"),
        ({"curve-times": [1.0, 2.0], "curve-km": [0.9, 0.8]}, "come together"),
        ({"curve-times": [2.0, 1.0], "curve-km": [0.9, 0.8], "curve-predicted": [0.9, 0.8]}, "rise"),
        ({"curve-times": [1.0, 2.0], "curve-km": [0.9, 1.5], "curve-predicted": [0.9, 0.8]}, "probabilities"),
        ({"curve-times": [1.0, 2.0], "curve-km": [-1.0, 0.8], "curve-predicted": [-1.0, 0.8]}, "probabilities"),
        ({"curve-times": [float(t) for t in range(1, 100)]}, "at most"),
    ],
)
def test_the_server_refuses_a_malformed_or_oversized_assessment(record, problem):
    with pytest.raises(ValueError, match=problem):
        read_assessment(record)
