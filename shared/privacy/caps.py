"""A site's privacy caps: per study (ε, δ) and over all studies on its data; no study can raise them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.errors import ConfigError, PolicyError

ROWS_PER_DELTA = 10  # default δ cap: 1 / (10 n) for n training rows


@dataclass(frozen=True)
class PrivacyCaps:
    """The site's own limits, which no study can raise; 0 takes the default named on each field."""

    max_epsilon: float = math.inf  # per study
    max_delta: float = 0.0  # per study; 0: 1 / (10 n) of the site's n training rows
    lifetime_epsilon: float = 0.0  # over all studies, at δ = the δ cap; 0: max_epsilon (so no study name buys more)

    def __post_init__(self) -> None:
        if not self.max_epsilon > 0:
            raise ConfigError("max-epsilon", "must be > 0", source="site policy")
        if not 0 <= self.max_delta < 1:
            raise ConfigError("max-delta", "must be in [0, 1) (0: 1/(10 n) of the site's training rows)", "site policy")
        if not self.lifetime_epsilon >= 0:
            raise ConfigError("lifetime-epsilon", "must be >= 0 (0: the same as max-epsilon)", source="site policy")

    @property
    def lifetime_cap(self) -> float:
        """ε the site's patients may lose over all studies together."""
        return self.lifetime_epsilon or self.max_epsilon

    @property
    def capped(self) -> bool:
        """Whether the site bounds its patients' ε at all (then it trains only with local DP)."""
        return math.isfinite(self.max_epsilon) or math.isfinite(self.lifetime_cap)

    def delta_cap(self, n_train: int) -> float:
        """The largest δ a study may use, which is also the δ the lifetime ε is stated at."""
        return self.max_delta or 1.0 / (ROWS_PER_DELTA * max(n_train, 1))

    def check_delta(self, site: str, delta: float, n_train: int) -> float:
        """The δ cap for `n_train` training rows; refuse (naming the site) a study whose δ is above it."""
        cap = self.delta_cap(n_train)
        if delta > cap:
            raise PolicyError(
                f"site '{site}': the study asks for δ = {delta:g}, above this site's cap of {cap:.3g}; refusing"
            )
        return cap
