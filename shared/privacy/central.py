"""Central DP (Flower's fixed-clipping wrappers): the site-level noise plan and the ε it gives per round."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.config import FederationConfig, PrivacyConfig
from shared.privacy.accounting import check_work, epsilon, plan_noise


@dataclass(frozen=True)
class CentralPlan:
    """Noise on the aggregate and the site-sampling rate it is accounted with."""

    noise_multiplier: float
    sampled: int
    sample_rate: float

    def epsilon(self, rounds: int, privacy: PrivacyConfig) -> float:
        """Site-level ε after `rounds` rounds (each site's whole update is the protected unit)."""
        return epsilon([(self.noise_multiplier, self.sample_rate, rounds)], privacy.delta, privacy.accountant)

    def noise_norm(self, privacy: PrivacyConfig, parameters: int) -> float:
        """The expected L2 norm of the noise on each round's aggregate: Flower's fixed-clipping wrappers add
        N(0, (noise multiplier x clip-norm / sampled sites)^2) to each of the model's `parameters`."""
        return self.noise_multiplier * privacy.clip_norm / self.sampled * math.sqrt(parameters)


def central_plan(privacy: PrivacyConfig, federation: FederationConfig, n_sites: int) -> CentralPlan:
    """Sites sampled per round and the noise that spends the study's ε over all its rounds (or the one given)."""
    sampled = min(n_sites, max(federation.min_sites, int(n_sites * federation.fraction)))
    rate = sampled / n_sites
    check_work([(privacy.noise_multiplier, rate, federation.rounds)], privacy.accountant)
    noise = privacy.noise_multiplier or plan_noise(
        privacy.epsilon, privacy.delta, rate, federation.rounds, privacy.accountant
    )
    return CentralPlan(noise, sampled, rate)
