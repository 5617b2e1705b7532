"""Build the Flower strategy a study asks for (FedAvg, FedProx, FedAdam or a robust rule), with central DP on top."""

from __future__ import annotations

import numpy as np
from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from shared.config import FederationConfig, PrivacyConfig
from shared.privacy.central import CentralPlan

CENTRAL_WRAPPERS = {
    "central-server": DifferentialPrivacyServerSideFixedClipping,
    "central-client": DifferentialPrivacyClientSideFixedClipping,
}


def build_strategy(
    federation: FederationConfig, privacy: PrivacyConfig | None = None, plan: CentralPlan | None = None
) -> Strategy:
    """A Flower strategy sampling `fraction` of sites (never fewer than `min-sites`), with central DP on top."""
    common = {
        "fraction_train": federation.fraction,
        "fraction_evaluate": 1.0,
        "min_train_nodes": federation.min_sites,
        "min_evaluate_nodes": federation.min_sites,
        "min_available_nodes": federation.min_sites,
    }
    f = federation.byzantine_sites
    builders = {
        "fedavg": lambda: FedAvg(**common),
        "fedprox": lambda: FedProx(proximal_mu=federation.proximal_mu, **common),
        "fedadam": lambda: FedAdam(eta=federation.server_lr, **common),
        "fedmedian": lambda: FedMedian(**common),
        "fedtrimmedavg": lambda: FedTrimmedAvg(beta=federation.trimmed_beta, **common),
        "krum": lambda: Krum(num_malicious_nodes=f, **common),
        # MultiKrum averages the n - f updates that Krum scores best, n being the fewest sites in a round.
        "multikrum": lambda: MultiKrum(num_malicious_nodes=f, num_nodes_to_select=federation.min_sites - f, **common),
        "bulyan": lambda: Bulyan(num_malicious_nodes=f, **common),
    }
    strategy = builders[federation.strategy]()
    if privacy is not None and privacy.mode in CENTRAL_WRAPPERS:
        strategy = CENTRAL_WRAPPERS[privacy.mode](
            strategy,
            noise_multiplier=plan.noise_multiplier,
            clipping_norm=privacy.clip_norm,
            num_sampled_clients=plan.sampled,
        )
    return strategy


MOMENTS = ("m_t", "v_t")  # FedAdam's (FedOpt's) server-side optimiser state


def _inner(strategy: Strategy) -> Strategy:
    """The aggregating strategy under any central-DP wrapper."""
    return _inner(strategy.strategy) if isinstance(strategy, tuple(CENTRAL_WRAPPERS.values())) else strategy


def strategy_state(strategy: Strategy) -> dict[str, dict[str, np.ndarray]]:
    """The strategy's state that must survive a restart (FedAdam's moments), by name."""
    inner = _inner(strategy)
    return {name: dict(getattr(inner, name)) for name in MOMENTS if getattr(inner, name, None)}


def restore_strategy_state(strategy: Strategy, state: dict[str, dict[str, np.ndarray]]) -> None:
    """Put saved state back: a resumed study continues exactly where it stopped, a rejected round leaves no trace."""
    inner = _inner(strategy)
    for name in MOMENTS:
        if hasattr(inner, name):  # a moment absent from `state` was not yet set when it was taken
            setattr(inner, name, dict(state[name]) if name in state else None)
