"""A dishonest simulated site (the benchmark's attack mod) on Flower's Simulation Engine: clipped by name."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from server.app import build_server_app
from simulations.attacks import attack_mod
from simulations.runner import simulate_app
from tests.conftest import with_federation
from tests.messages import server_message


def honest(msg: Message, context: Context) -> Message:
    """An honest site's reply: weights of 1, 20 examples."""
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.ones(3, np.float32))}),
            "metrics": MetricRecord({"num-examples": 20}),
            "site": ConfigRecord({"name": "x"}),
        }
    )
    return Message(content, reply_to=msg)


def at(partition: int) -> Context:
    return Context(run_id=1, node_id=1, node_config={"partition-id": partition}, state=RecordDict(), run_config={})


@pytest.mark.parametrize(
    ("attack", "weights", "examples"),
    [("sign-flip-x10", -10.0, 20), ("scale-x1000", 1000.0, 20), ("claim-1e9", 1.0, 10**9)],
)
def test_only_the_planned_site_of_the_planned_study_misbehaves(study, attack, weights, examples):
    mod = attack_mod({study.name: (1, attack)})
    msg = server_message(study)
    msg.metadata.__dict__["_message_id"] = "m1"
    bad = mod(msg, at(1), honest)
    assert np.allclose(bad.content["arrays"]["w"].numpy(), weights)
    assert bad.content["metrics"]["num-examples"] == examples
    good = mod(msg, at(0), honest)
    assert np.allclose(good.content["arrays"]["w"].numpy(), 1.0) and good.content["metrics"]["num-examples"] == 20


def test_a_sign_flipping_site_is_clipped_by_name_every_round_and_the_model_still_learns(study, demo_sites, tmp_path):
    study = with_federation(study, strategy="fedmedian", update_norm_median=2.0)
    folder = tmp_path / "run"
    mods = [attack_mod({study.name: (2, "sign-flip-x10")})]
    simulate_app(build_server_app(study, folder), demo_sites, mods=mods)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"] == "completed"
    clipped = [(e["round"], e["site"]) for e in history["events"] if e["event"] == "update-clipped"]
    assert clipped == [(1, demo_sites[2].name), (2, demo_sites[2].name)]
    final = [r for r in history["metrics"] if r["kind"] == "eval" and r["round"] == 2 and r["site"] == "weighted"][0]
    labels = pd.concat(pd.read_csv(s.data_path) for s in demo_sites)["diagnosis"]
    assert final["accuracy"] > labels.value_counts(normalize=True).max() + 0.1
