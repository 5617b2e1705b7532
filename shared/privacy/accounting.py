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

# Opacus's PRV accountant discretises the privacy loss on a grid that grows with the steps it composes, with how
# often each example is drawn (passes: steps x sample rate) and with the ε it resolves, and its time with the distinct
# entries. Within these bounds a noise plan (`plan_noise`) took at most 11 s and 1.1 GB here, a lifetime of 4 studies
# 2.1 s at ε = 3.5 (31 s and 1.7 GB at ε = 25); beyond them 17 s and 2.8 GB at 100,000 steps at rate 1 (64 s and
# 7.7 GB at Opacus's default error), or a MemoryError (BENCHMARKS.md, "PRV accounting's cost"). RDP's cost does not
# grow with any of them.
PRV_MAX_STEPS = 100_000
PRV_MAX_PASSES = 10_000
PRV_MAX_ENTRIES = 4
# The largest ε a study may target with PRV (its config says so), and the largest a PRV composition resolves: RDP's
# bound is computed first, in milliseconds, and above this it is the ε stated. A study with a fixed noise of 0.05
# once asked a site to allocate 816 GiB for one round's ε. RDP exceeds PRV by well under 2x, so every ε within a
# target is resolved by PRV, and an ε stated by RDP is above every target.
PRV_MAX_EPSILON = 20.0
PRV_MAX_RDP_EPSILON = 2 * PRV_MAX_EPSILON
PRV_EPS_ERROR = 0.01  # Opacus's default error of a PRV ε, at which every round is accounted
PLAN_EPS_ERROR_SHARE = 0.01  # a noise plan's PRV error, as a share of its target ε (never below the default)


class BudgetError(MedfedError):
    """The privacy budget cannot cover what is asked of it."""


def merge(history: list[Entry]) -> list[Entry]:
    """One entry per distinct (noise, sample rate): composition does not depend on order, and PRV's cost grows
    with the number of distinct entries (29 s at 50 entries)."""
    steps: dict[tuple[float, float], int] = {}
    for noise, rate, count in history:
        steps[(float(noise), float(rate))] = steps.get((float(noise), float(rate)), 0) + int(count)
    return [(noise, rate, count) for (noise, rate), count in steps.items()]


def beyond_prv(history: list[Entry]) -> str:
    """What in a history's shape is beyond the PRV accountant's bounds here ('' when nothing is)."""
    merged = merge(history)
    steps = sum(count for _, _, count in merged)
    passes = sum(rate * count for _, rate, count in merged)
    if passes > PRV_MAX_PASSES:
        return f"{passes:,.0f} passes (steps x sample rate)"
    if steps > PRV_MAX_STEPS:
        return f"{steps:,} steps"
    if len(merged) > PRV_MAX_ENTRIES:
        return f"{len(merged)} distinct noise and sampling settings (at most {PRV_MAX_ENTRIES})"
    return ""


def check_work(history: list[Entry], accountant: str) -> None:
    """Refuse, before any work, what the PRV accountant could not compose in bounded time and memory."""
    if accountant == "prv" and (excess := beyond_prv(history)):
        raise BudgetError(
            f"the PRV accountant composes at most {PRV_MAX_PASSES:,} passes over the data and {PRV_MAX_STEPS:,} "
            f"steps in bounded time and memory, and this asks for {excess}: privacy.accountant = 'rdp' accounts any "
            "number (or fewer rounds or local epochs, or larger batches)"
        )


def epsilon(history: list[Entry], delta: float, accountant: str) -> float:
    """The (ε, δ) guarantee of a history under Opacus's accountant (under PRV, RDP's bound when that is above what
    PRV resolves here); 0 for no steps."""
    if not history:
        return 0.0
    check_work(history, accountant)
    merged = tuple(sorted(merge(history)))
    if accountant == "prv":
        with _quiet(accountant):  # RDP's orders warn here as they do when PRV bounds its own domain with them
            bound = _epsilon(merged, delta, "rdp")
        if bound > PRV_MAX_RDP_EPSILON:
            return bound
    return _epsilon(merged, delta, accountant)


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
    """The noise multiplier that spends the budget over `steps` steps (Opacus's binary search); the caller has
    checked the work (`check_work`)."""
    from opacus.accountants.utils import get_noise_multiplier

    # PRV's grid grows with the ε it resolves over its error, and the search resolves ε far above the target (below
    # the final noise): at Opacus's default error, planning ε = 8 over 100,000 steps at rate 0.001 took 51 s and
    # 6.2 GB (5.5 s and 1.1 GB so). An error relative to the target keeps the grid alike for every target; the plan
    # is then looser by at most that much (0.2-0.7 % more noise, measured), and every round is still accounted at
    # Opacus's default error, so what the rounds spend stays within the target.
    precision = {"eps_error": max(PRV_EPS_ERROR, PLAN_EPS_ERROR_SHARE * target_epsilon)} if accountant == "prv" else {}
    try:
        with _quiet(accountant):
            noise = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                **precision,
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
