"""Build the Flower strategy a study asks for (FedAvg, FedProx, FedAdam), wrapped for central DP if asked."""

from __future__ import annotations

import numpy as np
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
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
    if federation.strategy == "fedprox":
        strategy: Strategy = FedProx(proximal_mu=federation.proximal_mu, **common)
    elif federation.strategy == "fedadam":
        strategy = FedAdam(eta=federation.server_lr, **common)
    else:
        strategy = FedAvg(**common)
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
    """Put saved state back, so a resumed study continues exactly where it stopped."""
    inner = _inner(strategy)
    for name, values in state.items():
        setattr(inner, name, dict(values))
