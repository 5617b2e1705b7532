"""What a site's journal says it spent: per study, and over its lifetime across all studies on its data."""

from __future__ import annotations

from typing import Any

from shared.privacy.accounting import Entry, epsilon

# The lifetime spend composes every study's rounds under RDP (README, "Differential privacy", for why).
LIFETIME_ACCOUNTANT = "rdp"


def history(rounds: list[dict[str, Any]]) -> list[Entry]:
    """The accountant history of journal round entries."""
    return [(float(r["noise-multiplier"]), float(r["sample-rate"]), int(r["steps"])) for r in rounds]


def lifetime_delta(rounds: list[dict[str, Any]], delta_cap: float, study_delta: float) -> float:
    """The δ the lifetime ε is stated at: the smallest of the site's δ cap and every δ a study on its data used.

    Any δ gives a valid (ε, δ) statement of the same composition; the smallest one a study was held to makes the
    lifetime cap at least as strict as that study's own cap, so a renamed study cannot buy budget by default.
    """
    return min([delta_cap, study_delta, *(float(r["delta"]) for r in rounds)])


def lifetime_spent(rounds: list[dict[str, Any]], delta: float, more: tuple[Entry, ...] = ()) -> float:
    """ε over every study's rounds (plus `more`), composed by RDP at `delta`."""
    return epsilon([*history(rounds), *more], delta, LIFETIME_ACCOUNTANT)


def spend_by_study(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per study: rounds recorded, its δ and accountant, and ε composed as the study itself accounts it."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["study"] for r in rounds):
        mine = [r for r in rounds if r["study"] == name]
        delta, accountant = mine[0]["delta"], mine[0]["accountant"]
        out[name] = {
            "rounds": len(mine),
            "delta": delta,
            "accountant": accountant,
            "epsilon": epsilon(history(mine), delta, accountant),
        }
    return out
