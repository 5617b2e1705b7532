"""ε from an accountant history and noise planning, with Opacus's accountants; identical entries merged."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator

from shared.errors import MedfedError

# Opacus calls logging.basicConfig on import; without this every Flower log line would print twice.
logging.getLogger("flwr").propagate = False

# Opacus is imported where an ε or a noise plan is computed, not here: it takes seconds to import (it loads
# torch.distributed and scipy.stats), and a server or a command that runs no private study never needs it.

Entry = tuple[float, float, int]  # (noise multiplier, sample rate, steps), Opacus's history format


class BudgetError(MedfedError):
    """The privacy budget cannot cover what is asked of it."""


def merge(history: list[Entry]) -> list[Entry]:
    """One entry per distinct (noise, sample rate): composition does not depend on order, and PRV's cost grows
    with the number of distinct entries (29 s at 50 entries), not with steps."""
    steps: dict[tuple[float, float], int] = {}
    for noise, rate, count in history:
        steps[(float(noise), float(rate))] = steps.get((float(noise), float(rate)), 0) + int(count)
    return [(noise, rate, count) for (noise, rate), count in steps.items()]


def epsilon(history: list[Entry], delta: float, accountant: str) -> float:
    """The (ε, δ) guarantee of a history under Opacus's accountant; 0 for no steps."""
    if not history:
        return 0.0
    return _epsilon(tuple(sorted(merge(history))), delta, accountant)


@functools.lru_cache(maxsize=1024)
def _epsilon(history: tuple[Entry, ...], delta: float, accountant: str) -> float:
    # A site checks the next round and then commits it: the same merged history, computed once.
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = list(history)
    with _quiet(accountant):
        return float(acc.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=256)
def plan_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The noise multiplier that spends exactly the budget over `steps` steps (Opacus's binary search)."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with _quiet(accountant):
            noise = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        return float(noise)
    except ValueError as exc:
        raise BudgetError(
            f"ε = {target_epsilon} at δ = {delta} is too small for {steps} steps at sample rate "
            f"{sample_rate:.4f}: no usable noise multiplier exists"
        ) from exc


@contextlib.contextmanager
def _quiet(accountant: str) -> Iterator[None]:
    """Opacus's PRV accountant at sample rate 1 (central DP sampling every site) evaluates log(1 - q) = log 0 in a
    branch it then discards, and bounds its domain with RDP orders that end at the largest: two warnings on every
    call, neither about the result, printed to a data scientist's terminal."""
    with warnings.catch_warnings():
        if accountant == "prv":
            warnings.filterwarnings("ignore", "divide by zero encountered in log", RuntimeWarning)
            warnings.filterwarnings("ignore", "Optimal order is the largest alpha", UserWarning)
        yield
