"""A dishonest simulated site (the benchmark's attack mod) on Flower's Simulation Engine: clipped by name."""

from __future__ import annotations

import json

import pandas as pd

from server.app import build_server_app
from simulations.attacks import attack_mod
from simulations.runner import simulate_app
from tests.conftest import with_federation


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
