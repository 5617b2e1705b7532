"""SecAgg+ rounds on Flower's Simulation Engine: the unmasked sum is FedAvg's, dropouts are recovered, nothing leaks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from safetensors.numpy import load_file

from client.site import SiteConfig
from client.sitefile import SitePolicy
from server.secure import quantization_range, threshold
from simulations.runner import simulate_app, studies_app
from tests.conftest import with_federation

# What the protocol's replies may carry besides medfed's metrics: public keys, encrypted key shares, the masked
# vector and key shares for unmasking (Flower's secaggplus_constants.Key values).
PROTOCOL_KEYS = {"pk1", "pk2", "dsts", "ctxts", "masked_params", "nids", "shares"}


def one_round(study, secure: str):
    return dataclasses.replace(
        with_federation(study, rounds=1, min_sites=3, strategy="fedavg", secure_aggregation=secure),
        name=f"secure-aggregation-{secure}",
    )


def histories(studies, sites, work) -> list[dict]:
    """The studies run in turn on one simulated federation (its actors start once)."""
    simulate_app(studies_app(studies, work), sites)
    return [json.loads((work / s.name / "history.json").read_text()) for s in studies]


def test_unmasked_sum_is_fedavg_and_a_site_dropping_mid_round_is_recovered(study, demo_sites, tmp_path, recorded):
    # The fourth site passes the study's admission, joins the key exchange, then fails while training: its masks
    # are in the others' vectors and must be removed from its key shares for the sum to come out right. The fifth
    # site's policy refuses the study at the setup stage, so it never joins the key exchange.
    refusing = SiteConfig("hospital-5", demo_sites[0].data_path, policy=SitePolicy(tasks=["imaging"]))
    sites = [*demo_sites, SiteConfig("hospital-4", tmp_path / "gone.csv"), refusing]
    secure, plain = histories([one_round(study, "on"), one_round(study, "off")], sites, tmp_path)
    assert secure["status"] == "completed", secure["events"]
    assert [t["accepted"] for t in secure["timings"]] == [3]
    during = [e for e in secure["events"] if "(secure aggregation" in e["reason"]]  # the final evaluation is plain
    dropped = [e for e in during if e["site"] == "hospital-4"]
    assert len(dropped) == 1 and "collect-masked-vectors" in dropped[0]["reason"] and "gone.csv" in dropped[0]["reason"]
    refused = [e for e in during if e["site"] == "hospital-5"]
    assert len(refused) == 1 and "(secure aggregation, setup)" in refused[0]["reason"]

    assert plain["status"] == "completed"
    got, want = (load_file(tmp_path / f"secure-aggregation-{s}" / "model.safetensors") for s in ("on", "off"))
    assert set(got) == set(want)
    assert max(float(np.abs(got[k] - want[k]).max()) for k in want) < 1e-4  # quantisation error only
    assert any(float(np.abs(want[k]).max()) > 1e-2 for k in want)  # and the model is not trivially zero

    protocol = [r for r in recorded if not r.has_error() and RECORD_KEY_CONFIGS in r.content.config_records]
    assert len(protocol) == 4 + 4 + 3 + 3  # all four sites exchange keys; the failing one sends no masked vector
    for reply in protocol:
        assert all(len(record) == 0 for record in reply.content.array_records.values())  # no plain update
        assert set(reply.content[RECORD_KEY_CONFIGS]) <= PROTOCOL_KEYS
        assert set(reply.content.config_records) <= {RECORD_KEY_CONFIGS, "site", "fitres.metrics", "fitres.status"}


def test_too_many_dropouts_stop_the_study_with_a_clear_event(study, demo_sites, tmp_path):
    sites = [demo_sites[0], SiteConfig("hospital-2", tmp_path / "a.csv"), SiteConfig("hospital-3", tmp_path / "b.csv")]
    (history,) = histories([one_round(study, "on")], sites, tmp_path)
    assert history["status"].startswith("stopped: round 1: only 0 usable update(s)")
    halted = [e for e in history["events"] if e["event"] == "secure-aggregation-halted"]
    assert halted and "too few sites stayed" in halted[0]["reason"]


@pytest.mark.parametrize(("sampled", "fraction", "expected"), [(3, 0.5, 2), (4, 0.5, 3), (10, 0.5, 6), (4, 0.25, 2)])
def test_threshold_is_more_than_the_fraction_and_at_least_two(sampled, fraction, expected):
    assert threshold(sampled, fraction) == expected


@pytest.mark.parametrize("sampled", [3, 10, 100])
def test_quantisation_sum_never_wraps_the_modulus(sampled):
    assert sampled * quantization_range(sampled) < 2**32
    assert quantization_range(sampled) <= 2**30
