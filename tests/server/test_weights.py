"""A round's example claims are capped, or made equal, the same way for aggregation and for the weighted metrics."""

from __future__ import annotations

import math

import pytest

from server.weights import weigh
from shared.config import FederationConfig


@pytest.mark.parametrize(
    ("settings", "secure", "weights", "why"),
    [
        ({}, False, [10, 20, 30, 100_000], "federation.max-examples = 100000"),
        ({"max_examples_median": 2.0}, False, [10, 20, 30, 50], "2 x the round's median claim 25"),
        (
            {"max_examples_median": 2.0, "secagg_max_weight": 40},
            True,
            [10, 20, 30, 40],
            "federation.secagg-max-weight = 40",
        ),
        ({"weighting": "equal", "max_examples": 50}, False, [1, 1, 1, 1], "federation.max-examples = 50"),
    ],
    ids=["max-examples", "median", "secure", "equal"],
)
def test_a_claim_is_capped_by_the_tightest_setting_or_ignored_when_equal(settings, secure, weights, why):
    weighing = weigh([10, 20, 30, 10**9], FederationConfig(**settings), secure)
    assert weighing.weights == weights and weighing.why == why
    assert weighing.counted[:3] == [10, 20, 30] and weighing.counted[3] == weighing.cap


@pytest.mark.parametrize("claim", [0, -5, math.nan, math.inf, -math.inf])
def test_a_claim_of_no_examples_weighs_nothing_even_when_weights_are_equal(claim):
    for weighting in ("examples", "equal"):
        weighing = weigh([10, claim], FederationConfig(weighting=weighting, max_examples_median=2.0))
        assert weighing.counted == [10, 0] and weighing.weights[1] == 0
