"""One dishonest or faulty site cannot wreck the global model: claims capped, updates clipped, aggregates screened."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from server.robust import aggregate, bound_claims, bound_updates, screen_aggregate
from server.screening import SiteNames, screen
from server.strategies import build_strategy
from shared.arrays import update_norm
from shared.config import FederationConfig

GLOBAL = ArrayRecord({"w": Array(np.full((2, 3), 0.5, np.float32)), "b": Array(np.zeros(2, np.float32))})
HONEST = {"a": 0.1, "b": 0.2, "c": 0.3}  # each honest site's update: this value added to every weight


def reply(site: str, node: int, arrays: dict[str, np.ndarray], n: int = 10) -> Message:
    """A site's train reply to the server's message, as screening receives it."""
    ask = Message(RecordDict({"arrays": GLOBAL}), dst_node_id=node, message_type="train")
    ask.metadata.__dict__["_message_id"] = f"m{node}"
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v.astype(np.float32)) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": n, "train-loss": 0.5}),
            "site": ConfigRecord({"name": site}),
        }
    )
    msg = Message(content, reply_to=ask)
    msg.metadata.__dict__["_src_node_id"] = node
    return msg


def moved(delta: float) -> dict[str, np.ndarray]:
    """The global model with `delta` added to every value."""
    return {k: v.numpy() + delta for k, v in GLOBAL.items()}


def round_of(bad: dict[str, np.ndarray], claim: int = 10) -> tuple[list[Message], SiteNames]:
    """Three honest sites and a fourth, 'd', replying `bad` with `claim` examples, screened as the server does."""
    names = SiteNames()
    replies = [reply(site, node, moved(delta)) for node, (site, delta) in enumerate(HONEST.items(), start=1)]
    replies.append(reply("d", 4, bad, n=claim))
    result = screen(replies, GLOBAL, names)
    assert not result.problems  # each update is finite and well-formed: only the robust bounds can catch it
    return result.accepted, names


@pytest.mark.parametrize(
    ("attack", "factor"), [("sign-flip x10", -10.0), ("scaling x1000", 1000.0)], ids=["sign-flip", "scaling"]
)
def test_an_outsized_update_is_clipped_to_the_median_bound_naming_the_site(attack, factor):
    bad = {k: v.numpy() * factor for k, v in GLOBAL.items()}
    accepted, names = round_of(bad)
    fed = FederationConfig(strategy="fedavg", update_norm_median=2.0)
    honest_norms = [
        update_norm(ArrayRecord({k: Array(v) for k, v in moved(d).items()}), GLOBAL) for d in HONEST.values()
    ]
    raw = update_norm(ArrayRecord({k: Array(v.astype(np.float32)) for k, v in bad.items()}), GLOBAL)
    median = float(np.median([*honest_norms, raw]))

    events = bound_updates(accepted, GLOBAL, fed, names)

    assert [(e["site"], e["event"]) for e in events] == [("d", "update-clipped")]
    assert events[0]["reason"] == (
        f"update norm {raw:.4g} above the bound {2 * median:.4g} (2 x the round's median update norm {median:.4g}); "
        "scaled down to it"
    )
    assert update_norm(accepted[3].content["arrays"], GLOBAL) == pytest.approx(2 * median, rel=1e-5)
    for msg, delta in zip(accepted[:3], HONEST.values(), strict=True):  # honest updates pass untouched
        assert np.allclose(msg.content["arrays"]["w"].numpy(), 0.5 + delta)
    arrays, _ = build_strategy(fed).aggregate_train(1, accepted)
    # The clipped site shifts each weight by at most its bound spread over the 8 values, a quarter of it.
    assert np.abs(arrays["w"].numpy() - 0.5).max() < 0.2 + 2 * median / np.sqrt(8) / 4 + 1e-6


def test_a_fixed_update_bound_applies_when_it_is_the_tighter_one():
    accepted, names = round_of(moved(5.0))
    events = bound_updates(accepted, GLOBAL, FederationConfig(update_norm_bound=1.0, update_norm_median=3.0), names)
    assert [e["site"] for e in events] == ["d"]
    assert "(federation.update-norm-bound = 1)" in events[0]["reason"]
    assert update_norm(accepted[3].content["arrays"], GLOBAL) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("claim", [10**9, 2**62, 2**63], ids=["1e9", "2^62", "2^63"])
def test_an_example_claim_is_capped_absolutely_and_by_the_median_claim(claim):
    accepted, names = round_of(moved(5.0), claim=claim)
    absolute = bound_claims(accepted, FederationConfig(strategy="fedavg", max_examples=1000), names)
    assert absolute == [
        {
            "site": "d",
            "event": "examples-capped",
            "reason": f"claims {claim} training examples; counted as 1000 (federation.max-examples = 1000)",
        }
    ]
    accepted, names = round_of(moved(5.0), claim=claim)
    fed = FederationConfig(strategy="fedavg", max_examples_median=3.0)
    relative = bound_claims(accepted, fed, names)
    assert [(e["site"], e["event"]) for e in relative] == [("d", "examples-capped")]
    assert relative[0]["reason"].endswith("counted as 30 (3 x the round's median claim 10)")
    assert [int(m.content["metrics"]["num-examples"]) for m in accepted] == [10, 10, 10, 30]
    arrays, _ = build_strategy(fed).aggregate_train(1, accepted)
    # d weighs 30 of 60: the global model is not d's own (0.5 + 5), as an uncapped claim would make it.
    expected = 0.5 + (10 * (0.1 + 0.2 + 0.3) + 30 * 5.0) / 60
    assert np.allclose(arrays["w"].numpy(), expected)


def test_equal_weighting_ignores_the_claims():
    accepted, names = round_of(moved(1.0), claim=10**9)
    assert bound_claims(accepted, FederationConfig(weighting="equal"), names) == []
    assert [int(m.content["metrics"]["num-examples"]) for m in accepted] == [1, 1, 1, 1]


@pytest.mark.parametrize("jump", [10.0, 0.0], ids=["jump-screen-on", "jump-screen-off"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_aggregate_is_rejected(bad, jump):
    aggregate_ = ArrayRecord({"w": Array(np.full((2, 3), bad, np.float32)), "b": Array(np.zeros(2, np.float32))})
    fed = FederationConfig(max_aggregate_change=jump)
    assert (
        screen_aggregate(aggregate_, GLOBAL, fed) == "the aggregate is not usable: tensor 'w' holds NaN or Inf values"
    )


def test_a_jump_in_the_global_model_is_rejected_and_fedadam_forgets_the_round():
    fed = FederationConfig(strategy="fedadam", server_lr=1000.0, max_aggregate_change=10.0)
    strategy = build_strategy(fed)
    strategy.configure_train(1, GLOBAL, ConfigRecord({}), _TwoNodes())
    accepted, _ = round_of(moved(0.5))
    arrays, rejected = aggregate(strategy, 1, accepted, GLOBAL, fed)
    size = update_norm(GLOBAL)
    change = update_norm(arrays, GLOBAL)
    assert rejected == (
        f"the aggregate moves the global model by {change:.4g}, more than federation.max-aggregate-change = 10 x its "
        f"norm {size:.4g}"
    )
    assert strategy.m_t is None and strategy.v_t is None  # the next round starts as if this one never happened


def test_a_modest_aggregate_passes_the_screen():
    assert (
        screen_aggregate(ArrayRecord({k: Array(v) for k, v in moved(0.1).items()}), GLOBAL, FederationConfig()) is None
    )


class _TwoNodes:
    """Enough of a Grid for a strategy's configure_train."""

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3, 4]
