"""Per-modality aggregation: each encoder averaged over the sites that trained it, weighted by their patients who had
the modality, and the fusion head over all sites; by the server's plaintext path and by SecAgg+'s arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_combine, factor_extract, parameters_mod
from flwr.common.secure_aggregation.quantization import dequantize, quantize

from server.robust import aggregate
from server.screening import SiteNames, screen
from server.secure import MODULUS, quantization_range
from server.strategies import build_strategy
from shared.config import FederationConfig
from shared.groups import divide_groups, weigh_groups

GLOBAL = {
    "encoders.image.coverage": [1.0],
    "encoders.image.net.w": [0.0, 0.0, 0.0],
    "encoders.note.coverage": [1.0],
    "encoders.note.net.w": [1.0, 1.0],
    "head.w": [0.0, 0.0],
}
# Each site: training patients, of them with an image and with a note, and its trained arrays. Site 2 has no note
# (its note encoder still moved, as DP noise would move it: that must not count); site 3 has no image.
SITES = [
    (100, 100, 50, {"encoders.image.net.w": [1.0] * 3, "encoders.note.net.w": [3.0, 3.0], "head.w": [1.0, 0.0]}),
    (200, 50, 0, {"encoders.image.net.w": [4.0] * 3, "encoders.note.net.w": [9.0, 9.0], "head.w": [0.0, 1.0]}),
    (300, 0, 300, {"encoders.image.net.w": [7.0] * 3, "encoders.note.net.w": [0.0, 0.0], "head.w": [1.0, 1.0]}),
]
HAND = {
    "encoders.image.net.w": [(100 * 1 + 50 * 4) / 150] * 3,  # sites 1 and 2, by their patients with an image
    "encoders.note.net.w": [(50 * 3 + 300 * 0) / 350] * 2,  # sites 1 and 3, by their patients with a note
    "head.w": [(100 * 1 + 300 * 1) / 600, (200 * 1 + 300 * 1) / 600],  # every site, by its patients
}


def record(values: dict[str, list[float]]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in values.items()})


def site_replies(coverage=GLOBAL) -> list[tuple[int, ArrayRecord]]:
    """Each site's weight and reply, weighed by the site as the multimodal task does."""
    out = []
    for n, images, notes, trained in SITES:
        arrays = record({**coverage, **trained})
        shares = {"encoders.image.coverage": images / n, "encoders.note.coverage": notes / n}
        out.append((n, weigh_groups(arrays, record(GLOBAL), shares)))
    return out


def message(arrays: ArrayRecord, n: int, node: int) -> Message:
    ask = Message(RecordDict({"arrays": record(GLOBAL)}), dst_node_id=node, message_type="train")
    ask.metadata.__dict__["_message_id"] = f"m{node}"
    content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": n}), "site": ConfigRecord({"name": f"s{node}"})}
    )
    reply = Message(content, reply_to=ask)
    reply.metadata.__dict__["_src_node_id"] = node
    return reply


def check(aggregated: ArrayRecord, atol: float) -> None:
    for key, want in HAND.items():
        np.testing.assert_allclose(aggregated[key].numpy(), want, atol=atol, err_msg=key)
    for key in ("encoders.image.coverage", "encoders.note.coverage"):
        assert aggregated[key].numpy().tolist() == [1.0]  # coverage stays the global model's


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_plaintext_round_matches_the_hand_computation(strategy):
    replies = [message(arrays, n, node) for node, (n, arrays) in enumerate(site_replies(), start=1)]
    fed = FederationConfig(strategy=strategy, min_sites=3)
    aggregated, problem = aggregate(build_strategy(fed), 1, replies, record(GLOBAL), fed)
    assert problem is None
    check(aggregated, atol=1e-6)


def test_fedadam_steps_from_the_per_modality_mean():
    replies = [message(arrays, n, node) for node, (n, arrays) in enumerate(site_replies(), start=1)]
    fed = FederationConfig(strategy="fedadam", min_sites=3)
    strategy = build_strategy(fed)
    strategy.configure_train(1, record(GLOBAL), ConfigRecord(), _NoGrid())
    aggregated, _ = aggregate(strategy, 1, replies, record(GLOBAL), fed)
    for key, want in HAND.items():  # Adam's first step moves each value by about eta towards the mean
        step = aggregated[key].numpy() - np.asarray(GLOBAL[key])
        assert np.all(np.sign(step) == np.sign(np.asarray(want) - np.asarray(GLOBAL[key]))), key


def test_secagg_sum_gives_numerator_and_denominator_of_each_modalitys_mean():
    # SecAgg+'s arithmetic as Flower runs it: each site scales its vector by its weight, quantises it and adds
    # masks; the masks cancel in the sum (the protocol's guarantee), which the server dequantises and divides by
    # the total weight. The multimodal replies need nothing more: the coverage arrays ride in the same vector.
    fed = FederationConfig(strategy="fedavg", min_sites=3)
    clipping, target = fed.secagg_value_range, quantization_range(len(SITES))
    keys = list(GLOBAL)
    summed = None
    for n, arrays in site_replies():
        q_ratio = round(min(n, fed.secagg_max_weight) / fed.secagg_max_weight * target)
        vector = [arrays[k].numpy().astype(np.float64) * (q_ratio / target) for k in keys]
        quantised = [q.astype(np.int64) for q in factor_combine(q_ratio, quantize(vector, clipping, target))]
        summed = quantised if summed is None else [a + b for a, b in zip(summed, quantised, strict=True)]
    q_total, recovered = factor_extract(parameters_mod(summed, MODULUS))
    mean = [(v - (len(SITES) - 1) * clipping) * (target / q_total) for v in dequantize(recovered, clipping, target)]
    unmasked = ArrayRecord({k: Array(v.astype(np.float32)) for k, v in zip(keys, mean, strict=True)})
    aggregated, problem = aggregate(build_strategy(fed), 1, [message(unmasked, 600, 1)], record(GLOBAL), fed)
    assert problem is None
    # Quantisation error only: a site's vector is scaled by its weight / secagg-max-weight before quantising, and an
    # encoder's mean is then divided by its coverage, so small sites and rare modalities lose the most precision.
    check(aggregated, atol=1e-4)


def test_an_encoder_no_site_trained_keeps_the_global_values():
    mean = record({**GLOBAL, "encoders.note.coverage": [0.0], "encoders.note.net.w": [5.0, 5.0]})
    assert divide_groups(mean, record(GLOBAL))["encoders.note.net.w"].numpy().tolist() == [1.0, 1.0]


class _NoGrid:
    """FedAdam's configure_train only asks the grid for nodes: none are needed to record the current model."""

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3]


@pytest.mark.parametrize("share", [-0.5, 3.0])
def test_a_reply_whose_coverage_is_not_a_share_is_rejected_naming_the_site(share):
    replies = [message(arrays, n, node) for node, (n, arrays) in enumerate(site_replies(), start=1)]
    forged = {k: v.numpy() for k, v in replies[1].content["arrays"].items()}
    forged["encoders.image.coverage"] = np.array([share], np.float32)
    replies[1] = message(ArrayRecord({k: Array(v) for k, v in forged.items()}), 200, 2)
    result = screen(replies, record(GLOBAL), SiteNames())
    assert [p["site"] for p in result.problems] == ["s2"] and len(result.accepted) == 2
    assert "'encoders.image.coverage' must hold a share of patients in [0, 1]" in result.problems[0]["reason"]
