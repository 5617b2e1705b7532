"""Weighted metrics that tolerate undefined values, and strategy choice from the study config."""

from __future__ import annotations

import pytest
from flwr.serverapp.strategy import Bulyan, FedAdam, FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum, MultiKrum

from server.history import History, weighted_mean
from server.strategies import build_strategy
from shared.config import FederationConfig


def test_weighted_mean_skips_metrics_a_site_cannot_define():
    mean = weighted_mean(
        {"a": {"num-examples": 30, "accuracy": 0.9, "roc-auc": 0.8}, "b": {"num-examples": 10, "accuracy": 0.5}}
    )
    assert mean["accuracy"] == pytest.approx(0.8)
    assert mean["roc-auc"] == pytest.approx(0.8)
    assert mean["num-examples"] == 40


def test_history_rows_hold_sites_and_the_weighted_mean():
    history = History()
    history.add_metrics(
        1, "train", {"a": {"num-examples": 1, "train-loss": 1.0}, "b": {"num-examples": 3, "train-loss": 2.0}}
    )
    frame = history.to_frame()
    assert list(frame["site"]) == ["a", "b", "weighted"]
    assert frame.loc[frame.site == "weighted", "train-loss"].item() == pytest.approx(1.75)


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
