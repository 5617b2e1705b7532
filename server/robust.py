"""Robust aggregation around any Flower strategy: example claims capped, updates norm-bounded, aggregates screened."""

from __future__ import annotations

import copy

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from server.history import History
from server.screening import SiteNames
from server.strategies import restore_strategy_state, strategy_state
from server.weights import weigh
from shared.arrays import non_finite, scale_update, update_norm
from shared.config import FederationConfig, PrivacyConfig
from shared.groups import divide_groups, groups
from shared.privacy.central import CentralPlan

REJECTED = "aggregate-rejected"


def bound_replies(
    accepted: list[Message], reference: ArrayRecord, federation: FederationConfig, names: SiteNames
) -> list[dict[str, str]]:
    """Cap each screened reply's example claim and clip its update's norm, in place; one event per change."""
    return bound_claims(accepted, federation, names) + bound_updates(accepted, reference, federation, names)


def bound_claims(accepted: list[Message], federation: FederationConfig, names: SiteNames) -> list[dict[str, str]]:
    """Weigh each reply by its example claim capped (absolutely and by the round's median claim), or equally."""
    claims = [int(msg.content["metrics"]["num-examples"]) for msg in accepted]
    weighing = weigh(claims, federation)
    events = []
    for msg, claim, weight in zip(accepted, claims, weighing.weights, strict=True):
        if federation.weighting == "examples" and claim > weighing.cap:
            events.append(
                {
                    "site": names.node(msg.metadata.src_node_id),
                    "event": "examples-capped",
                    "reason": f"claims {claim} training examples; counted as {weighing.cap} ({weighing.why})",
                }
            )
        msg.content["metrics"] = MetricRecord({"num-examples": weight})
    return events


def bound_updates(
    accepted: list[Message], reference: ArrayRecord, federation: FederationConfig, names: SiteNames
) -> list[dict[str, str]]:
    """Scale down each update (reply minus `reference`, the global model) whose norm is above the round's bound."""
    if not (federation.update_norm_bound or federation.update_norm_median) or not accepted:
        return []
    norms = [update_norm(msg.content["arrays"], reference) for msg in accepted]
    bound, why = federation.update_norm_bound, f"federation.update-norm-bound = {federation.update_norm_bound:g}"
    if federation.update_norm_median:
        median = float(np.median(norms))
        if not bound or federation.update_norm_median * median < bound:
            bound = federation.update_norm_median * median
            why = f"{federation.update_norm_median:g} x the round's median update norm {median:.4g}"
    events = []
    for msg, norm in zip(accepted, norms, strict=True):
        if norm > bound:
            msg.content["arrays"] = scale_update(msg.content["arrays"], reference, bound / norm)
            events.append(
                {
                    "site": names.node(msg.metadata.src_node_id),
                    "event": "update-clipped",
                    "reason": f"update norm {norm:.4g} above the bound {bound:.4g} ({why}); scaled down to it",
                }
            )
    return events


def central_noise_problem(
    plan: CentralPlan, privacy: PrivacyConfig, model: ArrayRecord, federation: FederationConfig
) -> str | None:
    """Why central DP's noise alone would have every round's aggregate rejected (`screen_aggregate`), each round
    spending ε for nothing; else None."""
    size = update_norm(model)
    if not federation.max_aggregate_change or size == 0:
        return None
    values = [a.numpy() for a in model.values()]
    noise = plan.noise_norm(privacy, sum(v.size for v in values if np.issubdtype(v.dtype, np.floating)))
    if noise <= federation.max_aggregate_change * size:
        return None
    return (
        f"central DP's noise would move the global model by about {noise:.3g} a round (noise multiplier "
        f"{plan.noise_multiplier:.3g} x privacy.clip-norm {privacy.clip_norm:g} / {plan.sampled} sites a round, over "
        f"the model's parameters), more than federation.max-aggregate-change = {federation.max_aggregate_change:g} "
        f"x its norm {size:.3g}: every round would be rejected while spending ε. Sample more sites a round, raise "
        'privacy.epsilon, or use local DP (privacy.mode = "local")'
    )


def screen_aggregate(aggregate: ArrayRecord, previous: ArrayRecord, federation: FederationConfig) -> str | None:
    """Why the new global model must not replace `previous`: non-finite values, or too large a jump; else None."""
    problem = non_finite(aggregate)
    if problem:
        return f"the aggregate is not usable: {problem}"
    size = update_norm(previous)
    change = update_norm(aggregate, previous)
    limit = federation.max_aggregate_change * size
    # A model of all zeros has no scale to measure a jump against: only finiteness is checked then.
    if federation.max_aggregate_change and size > 0 and change > limit:
        return (
            f"the aggregate moves the global model by {change:.4g}, more than federation.max-aggregate-change = "
            f"{federation.max_aggregate_change:g} x its norm {size:.4g}"
        )
    return None


def aggregate(
    strategy: Strategy, rnd: int, accepted: list[Message], previous: ArrayRecord, federation: FederationConfig
) -> tuple[ArrayRecord | None, str | None]:
    """The strategy's aggregate and, if it is rejected, why; a rejected round leaves the strategy's state as it was."""
    before = strategy_state(strategy)
    if accepted and groups(list(previous.keys())):
        accepted = [group_mean(accepted, previous)]
    aggregated, _ = strategy.aggregate_train(rnd, accepted)
    if aggregated is None:
        return None, None
    problem = screen_aggregate(aggregated, previous, federation)
    if problem:
        restore_strategy_state(strategy, before)
    return aggregated, problem


def group_mean(accepted: list[Message], previous: ArrayRecord) -> Message:
    """The replies' weighted mean (one reply already is, under SecAgg+) with each parameter group some sites did not
    train averaged over those that did (shared.groups): one reply, which the strategy then takes as the round's mean
    (FedAdam steps from it)."""
    contents = [msg.content for msg in accepted]
    mean = aggregate_arrayrecords(contents, "num-examples") if len(contents) > 1 else contents[0]["arrays"]
    reply = copy.copy(accepted[0])
    total = sum(int(c["metrics"]["num-examples"]) for c in contents)
    reply.content = RecordDict(
        {"arrays": divide_groups(mean, previous), "metrics": MetricRecord({"num-examples": total})}
    )
    return reply


def failed_rounds(history: History) -> int:
    """How many rounds of the study (resumed ones included) had their aggregate rejected."""
    return sum(event["event"] == REJECTED for event in history.events)
