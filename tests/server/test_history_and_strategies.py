"""Weighted metrics that tolerate undefined values, and strategy choice from the study config."""

from __future__ import annotations

import pytest
from flwr.serverapp.strategy import Bulyan, FedAdam, FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum, MultiKrum

from server.history import History, weighted_mean
from server.strategies import build_strategy
from shared.config import FederationConfig


def test_weighted_mean_skips_metrics_a_site_cannot_define():
    mean = weighted_mean(
        {"a": {"num-examples": 30, "accuracy": 0.9, "roc-auc": 0.8}, "b": {"num-examples": 10, "accuracy": 0.5}},
        {"a": 30, "b": 10},
    )
    assert mean == {"accuracy": pytest.approx(0.8), "roc-auc": pytest.approx(0.8)}


def test_history_rows_hold_sites_and_the_weighted_mean():
    history = History()
    history.add_metrics(
        1,
        "train",
        {"a": {"num-examples": 1, "train-loss": 1.0}, "b": {"num-examples": 3, "train-loss": 2.0}},
        FederationConfig(),
    )
    frame = history.to_frame()
    assert list(frame["site"]) == ["a", "b", "weighted"]
    assert frame.loc[frame.site == "weighted", "train-loss"].item() == pytest.approx(1.75)
    assert frame.loc[frame.site == "weighted", "num-examples"].item() == 4


@pytest.mark.parametrize(
    ("settings", "secure", "counted", "weight"),
    [
        ({"max_examples": 100}, False, 100, 100),
        ({"max_examples_median": 3.0}, False, 30, 30),
        ({"secagg_max_weight": 50}, True, 50, 50),
        ({"weighting": "equal", "max_examples": 100}, False, 100, 1),
    ],
    ids=["max-examples", "max-examples-median", "secagg-max-weight", "equal"],
)
def test_a_site_claiming_1e9_examples_weighs_in_the_metrics_what_it_weighs_in_aggregation(
    settings, secure, counted, weight
):
    fed = FederationConfig(**settings)
    honest = {site: {"num-examples": 10, "accuracy": 0.9} for site in "abc"}
    history = History()
    mean = history.add_metrics(1, "eval", {**honest, "d": {"num-examples": 1e9, "accuracy": 0.1}}, fed, secure)
    honest_weight = 1 if weight == 1 else 10
    assert mean["accuracy"] == pytest.approx((3 * honest_weight * 0.9 + weight * 0.1) / (3 * honest_weight + weight))
    assert mean["num-examples"] == 30 + counted
    assert [r["num-examples"] for r in history.rows if r["site"] == "d"] == [1e9]  # each site's own row: its claim


@pytest.mark.parametrize(("name", "cls"), [("fedavg", FedAvg), ("fedprox", FedProx), ("fedadam", FedAdam)])
def test_strategy_from_config(name, cls):
    strategy = build_strategy(
        FederationConfig(strategy=name, min_sites=3, fraction=0.5, proximal_mu=0.1, server_lr=0.2)
    )
    assert type(strategy) is cls
    assert strategy.min_train_nodes == 3 and strategy.fraction_train == 0.5
    if name == "fedprox":
        assert strategy.proximal_mu == 0.1
    if name == "fedadam":
        assert strategy.eta == 0.2


@pytest.mark.parametrize(
    ("name", "cls", "sites"),
    [
        ("fedmedian", FedMedian, 3),
        ("fedtrimmedavg", FedTrimmedAvg, 3),
        ("krum", Krum, 5),
        ("multikrum", MultiKrum, 5),
        ("bulyan", Bulyan, 7),
    ],
)
def test_robust_strategy_from_config(name, cls, sites):
    strategy = build_strategy(FederationConfig(strategy=name, min_sites=sites, byzantine_sites=1))
    assert type(strategy) is cls and strategy.min_train_nodes == sites
    if name in ("krum", "multikrum", "bulyan"):
        assert strategy.num_malicious_nodes == 1
    if name == "multikrum":
        assert strategy.num_nodes_to_select == 4  # n - f
    if name == "fedtrimmedavg":
        assert strategy.beta == 0.34
