"""Build the Flower strategy a study asks for (FedAvg, FedProx, FedAdam) from its federation config."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Strategy

from shared.config import FederationConfig


def build_strategy(federation: FederationConfig) -> Strategy:
    """A Flower strategy sampling `fraction` of sites, never fewer than `min-sites`."""
    common = {
        "fraction_train": federation.fraction,
        "fraction_evaluate": 1.0,
        "min_train_nodes": federation.min_sites,
        "min_evaluate_nodes": federation.min_sites,
        "min_available_nodes": federation.min_sites,
    }
    if federation.strategy == "fedprox":
        return FedProx(proximal_mu=federation.proximal_mu, **common)
    if federation.strategy == "fedadam":
        return FedAdam(eta=federation.server_lr, **common)
    return FedAvg(**common)
