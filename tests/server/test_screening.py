"""The server keeps NaN/Inf, wrong-shaped and refused updates out of the global model, naming the site."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from server.screening import SiteNames, screen
from server.strategies import build_strategy
from shared.assessment import RECORD
from shared.config import FederationConfig

GLOBAL = ArrayRecord({"w": Array(np.zeros((2, 3), np.float32)), "b": Array(np.zeros(2, np.float32))})


def reply(site: str, w: np.ndarray, n: int = 10, node: int = 1) -> Message:
    ask = Message(RecordDict({"arrays": GLOBAL}), dst_node_id=node, message_type="train")
    ask.metadata.__dict__["_message_id"] = f"m{node}"
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(w.astype(np.float32)), "b": Array(np.ones(2, np.float32))}),
            "metrics": MetricRecord({"num-examples": n, "train-loss": 0.5}),
            "site": ConfigRecord({"name": site}),
        }
    )
    msg = Message(content, reply_to=ask)
    msg.metadata.__dict__["_src_node_id"] = node
    return msg


def test_bad_updates_are_rejected_and_the_rest_aggregated():
    good_a = reply("a", np.full((2, 3), 1.0), n=10, node=1)
    good_b = reply("b", np.full((2, 3), 4.0), n=30, node=2)
    nan = reply("c", np.array([[np.nan, 0, 0], [0, 0, 0]]), node=3)
    inf = reply("d", np.array([[np.inf, 0, 0], [0, 0, 0]]), node=4)
    shape = reply("e", np.zeros((3, 3)), node=5)
    result = screen([good_a, good_b, nan, inf, shape], GLOBAL, SiteNames())
    assert sorted(result.site_metrics) == ["a", "b"]
    rejected = {p["site"]: p["reason"] for p in result.problems}
    assert set(rejected) == {"c", "d", "e"}
    assert "NaN or Inf" in rejected["c"] and "NaN or Inf" in rejected["d"] and "shape (3, 3)" in rejected["e"]
    arrays, _ = build_strategy(FederationConfig(strategy="fedavg")).aggregate_train(1, result.accepted)
    assert np.allclose(arrays["w"].numpy(), 0.25 * 1.0 + 0.75 * 4.0)


def test_error_replies_are_recorded_as_refusals_with_the_known_site_name():
    names = SiteNames()
    screen([reply("hospital-7", np.zeros((2, 3)), node=9)], GLOBAL, names)
    ask = Message(RecordDict(), dst_node_id=9, message_type="train")
    ask.metadata.__dict__["_message_id"] = "m9"
    refused = Message(Error(code=4001, reason="site 'hospital-7': file not found"), reply_to=ask)
    refused.metadata.__dict__["_src_node_id"] = 9
    result = screen([refused], GLOBAL, names)
    assert result.problems == [
        {"site": "hospital-7", "event": "refused", "reason": "site 'hospital-7': file not found"}
    ]
    assert not result.accepted


def test_a_final_assessment_is_kept_bounded_and_a_malformed_one_is_rejected_by_site():
    good = reply("north", np.zeros((2, 3)), node=1)
    good.content[RECORD] = MetricRecord({"ci-accuracy-low": 0.7, "ci-accuracy-high": 0.9, "class-counts": [12, 30]})
    oversized = reply("south", np.zeros((2, 3)), node=2)
    oversized.content[RECORD] = MetricRecord({"bins-edges": [i / 1000 for i in range(1001)]})
    result = screen([good, oversized], None, SiteNames())
    assert result.assessments == {"north": {"ci-accuracy-low": 0.7, "ci-accuracy-high": 0.9, "class-counts": [12, 30]}}
    assert set(result.site_metrics) == {"north", "south"}  # the site's metrics still count
    [problem] = result.problems
    assert problem["site"] == "south" and problem["event"] == "rejected" and "bins-edges" in problem["reason"]
