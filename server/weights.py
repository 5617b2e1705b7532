"""A site's weight in a round's average: its example claim capped, or one each with `federation.weighting = "equal"`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.config import FederationConfig


@dataclass(frozen=True)
class Weighing:
    """Each site's counted examples (its claim, capped) and weight, and the cap with the setting that set it."""

    counted: list[int]
    weights: list[int]
    cap: int
    why: str


def weigh(claims: Sequence[float], federation: FederationConfig, secure: bool = False) -> Weighing:
    """Cap a round's example claims as its aggregation does: absolutely and by the median claim in plaintext rounds,
    by `secagg-max-weight` (which each site applies itself) under SecAgg+. A claim of no examples, negative or
    non-finite, counts as none and weighs nothing."""
    usable = [int(c) if math.isfinite(c) and c > 0 else 0 for c in claims]
    if secure:
        cap, why = federation.secagg_max_weight, f"federation.secagg-max-weight = {federation.secagg_max_weight}"
    else:
        cap, why = federation.max_examples, f"federation.max-examples = {federation.max_examples}"
        positive = [float(c) for c in usable if c > 0]
        if federation.max_examples_median and positive:
            median = float(np.median(positive))
            if federation.max_examples_median * median < cap:
                cap = max(1, int(federation.max_examples_median * median))
                why = f"{federation.max_examples_median:g} x the round's median claim {median:g}"
    counted = [min(c, cap) for c in usable]
    weights = [min(c, 1) for c in counted] if federation.weighting == "equal" else counted
    return Weighing(counted, weights, cap, why)
