"""What a site's journal says it spent: per study, and over its lifetime across all studies on its data."""

from __future__ import annotations

from typing import Any

from shared.privacy.accounting import Entry, beyond_prv, epsilon

# The lifetime spend composes every study's rounds under RDP when the studies used different accountants (README,
# "Differential privacy", for why) or when the site's history is beyond what PRV composes in bounded time and memory,
# and with their common accountant otherwise.
FALLBACK_ACCOUNTANT = "rdp"


def history(rounds: list[dict[str, Any]]) -> list[Entry]:
    """The accountant history of journal round entries."""
    return [(float(r["noise-multiplier"]), float(r["sample-rate"]), int(r["steps"])) for r in rounds]


def lifetime_delta(rounds: list[dict[str, Any]], delta_cap: float, study_delta: float) -> float:
    """The δ the lifetime ε is stated at: the smallest of the site's δ cap and every δ a study on its data used.

    Any δ gives a valid (ε, δ) statement of the same composition; the smallest one a study was held to makes the
    lifetime cap at least as strict as that study's own cap, so a renamed study cannot buy budget by default.
    """
    return min([delta_cap, study_delta, *(float(r["delta"]) for r in rounds)])


def lifetime_accountant(
    rounds: list[dict[str, Any]], more: tuple[Entry, ...] = (), accountant: str | None = None
) -> str:
    """The accountant of the lifetime ε: the one every study on the site's data used (with `more`, the entries of a
    study about to spend with `accountant`), so that a site's only study has its own ε as its lifetime ε; RDP when
    they differ, or when PRV could not compose them all in bounded time and memory."""
    used = {str(r["accountant"]) for r in rounds} | ({accountant} if accountant else set())
    common = used.pop() if len(used) == 1 else FALLBACK_ACCOUNTANT
    if common == "prv" and beyond_prv([*history(rounds), *more]):
        return FALLBACK_ACCOUNTANT
    return common


def lifetime_spent(
    rounds: list[dict[str, Any]], delta: float, more: tuple[Entry, ...] = (), accountant: str | None = None
) -> float:
    """ε over every study's rounds (plus `more`, of a study using `accountant`), composed at `delta`."""
    return epsilon([*history(rounds), *more], delta, lifetime_accountant(rounds, more, accountant))


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
