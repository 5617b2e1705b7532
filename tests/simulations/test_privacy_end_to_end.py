"""Privacy in whole simulated studies: local DP with a site cap, and Flower's central DP wrappers."""

from __future__ import annotations

import dataclasses
import json

from shared.config import PrivacyConfig
from simulations.runner import simulate, simulate_app, studies_app
from tests.messages import assert_only_model_and_aggregates


def test_local_dp_reports_epsilon_refuses_the_capped_site_and_a_second_run_finds_the_budget_spent(
    study, demo_sites, tmp_path, recorded
):
    """Each simulation runs its sites in fresh Ray worker processes: the second run resumes the first's ledgers."""
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=4.0))
    sites = [dataclasses.replace(s, ledger_dir=tmp_path / "ledgers") for s in demo_sites]
    sites[2] = dataclasses.replace(sites[2], max_epsilon=1.0)
    simulate(private, sites, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["status"] == "completed"
    refused = [e for e in history["events"] if e["event"] == "refused"]
    assert [e["round"] for e in refused] == [1, 2]
    assert all("hospital-3" in e["reason"] and "cap of 1.0" in e["reason"] for e in refused)
    spent = {
        (r["round"], r["site"]): r["dp-epsilon"]
        for r in history["metrics"]
        if r["kind"] == "train" and r["site"] != "weighted"
    }
    assert set(spent) == {(1, "hospital-1"), (1, "hospital-2"), (2, "hospital-1"), (2, "hospital-2")}
    for site in ("hospital-1", "hospital-2"):
        assert 0 < spent[(1, site)] < spent[(2, site)] <= 4.0 and spent[(2, site)] > 3.9  # the whole budget, no more
    journals = sorted(p.name for p in (tmp_path / "ledgers").glob("*.journal.jsonl"))
    assert journals == ["hospital-1.journal.jsonl", "hospital-2.journal.jsonl"]  # one per site, every study in it
    assert len(list((tmp_path / "ledgers" / "released").iterdir())) == 2
    for reply in recorded:
        if not reply.has_error():
            assert_only_model_and_aggregates(reply, private)

    simulate(private, sites, tmp_path / "again")
    again = json.loads((tmp_path / "again" / "history.json").read_text())
    assert again["status"].startswith("stopped: round 1: only 0 usable update(s)")
    refusals = {e["site"]: e["reason"] for e in again["events"] if e["event"] == "refused"}
    assert all("privacy budget exhausted" in refusals[site] for site in ("hospital-1", "hospital-2"))
    assert "cap of 1.0" in refusals["hospital-3"]
    journal = (tmp_path / "ledgers" / "hospital-1.journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in journal] == [1, 2]  # the refused round spent nothing


def test_central_dp_runs_and_reports_site_level_epsilon_in_both_modes(study, demo_sites, tmp_path):
    studies = [
        dataclasses.replace(study, name=mode, privacy=PrivacyConfig(mode=mode, epsilon=5.0, clip_norm=1.0))
        for mode in ("central-server", "central-client")
    ]
    simulate_app(studies_app(studies, tmp_path), demo_sites)  # one simulated federation, its actors started once
    for mode in ("central-server", "central-client"):
        history = json.loads((tmp_path / mode / "history.json").read_text())
        assert history["status"] == "completed", (mode, history["events"])
        assert not history["events"], (mode, history["events"])  # no aggregate rejected: the noise is not the model
        epsilons = [r["epsilon"] for r in history["metrics"] if r["kind"] == "privacy"]
        assert len(epsilons) == 2 and 0 < epsilons[0] < epsilons[1] <= 5.0, mode
