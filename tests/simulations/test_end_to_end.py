"""Whole studies on Flower's Simulation Engine: learning, outputs, wire content, and bad sites."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from client.site import SiteConfig
from shared.config import SimulationConfig
from shared.tasks import get_task
from shared.tasks.multimodal.demo import write_demo_sites as write_multimodal_sites
from shared.tasks.text.demo import CLASSES
from simulations.runner import LOG_FILE, simulate
from tests.conftest import HEAD_CPUS, with_federation
from tests.messages import assert_only_model_and_aggregates


def test_federated_model_beats_majority_class_and_leaks_nothing_on_the_ray_cluster_the_study_names(
    study, demo_sites, tmp_path, recorded, ray_cluster, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS")  # named by the study, not by the environment
    folder = tmp_path / "run"
    simulate(dataclasses.replace(study, simulation=SimulationConfig(ray_address=ray_cluster)), demo_sites, folder)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"] == "completed"
    log = (folder / LOG_FILE).read_text()
    assert f"'address': '{ray_cluster}'" in log and f"Constructed ActorPool with: {HEAD_CPUS} actors" in log
    final = [r for r in history["metrics"] if r["kind"] == "eval" and r["round"] == 2 and r["site"] == "weighted"][0]
    labels = pd.concat(pd.read_csv(s.data_path) for s in demo_sites)["diagnosis"]
    majority = labels.value_counts(normalize=True).max()
    assert final["accuracy"] > majority + 0.1
    for name in (
        "study.json",
        "history.csv",
        "model.safetensors",
        "checkpoints/round-001.safetensors",
        "checkpoints/round-002.safetensors",
        "report.html",
        "model-card.md",
        "model-card.json",
    ):
        assert (folder / name).is_file(), name
    assert set(history["assessments"]) == {s.name for s in demo_sites}  # each site's final assessment, kept
    # 2 train rounds + the final evaluation, 3 sites each.
    assert len(recorded) == 9
    for reply in recorded:
        assert not reply.has_error()
        assert_only_model_and_aggregates(reply, study)


def test_bad_site_is_refused_and_the_study_carries_on(study, demo_sites, tmp_path):
    broken = tmp_path / "broken.csv"
    pd.read_csv(demo_sites[2].data_path).drop(columns=["diagnosis"]).to_csv(broken, index=False)
    sites = demo_sites[:2] + [SiteConfig("hospital-3", broken)]
    folder = tmp_path / "run"
    simulate(study, sites, folder)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"] == "completed"
    refusals = [e for e in history["events"] if e["event"] == "refused"]
    assert {e["round"] for e in refusals} == {1, 2}
    assert all("hospital-3" in e["reason"] and "diagnosis" in e["reason"] for e in refusals)
    assert {r["site"] for r in history["metrics"] if r["kind"] == "train"} == {"hospital-1", "hospital-2", "weighted"}


def test_too_few_sites_stops_cleanly_and_keeps_outputs(study, demo_sites, tmp_path):
    sites = demo_sites[:2] + [SiteConfig("hospital-3", tmp_path / "gone.csv")]
    folder = tmp_path / "run"
    simulate(with_federation(study, min_sites=3), sites, folder)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"].startswith("stopped: round 1: only 2 usable update(s)")
    assert (folder / "model.safetensors").is_file() and (folder / "study.json").is_file()


def run_demo(task_name: str, rounds: int, tmp_path) -> tuple[dict, list[SiteConfig]]:
    """Run a task's built-in study over 3 simulated sites; its history and the sites."""
    task = get_task(task_name)
    base = task.demo_study()
    study = dataclasses.replace(base, federation=dataclasses.replace(base.federation, rounds=rounds))
    sites = [SiteConfig(p.stem, p) for p in task.write_demo_sites(tmp_path / "sites", 3)]
    simulate(study, sites, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["status"] == "completed"
    return history, sites


def weighted_eval(history: dict) -> dict[int, dict]:
    return {r["round"]: r for r in history["metrics"] if r["kind"] == "eval" and r["site"] == "weighted"}


def test_imaging_study_beats_chance(tmp_path):
    history, _ = run_demo("imaging", 2, tmp_path)
    assert weighted_eval(history)[2]["roc-auc"] > 0.75  # chance is 0.5


def test_segmentation_dice_improves_over_rounds(tmp_path):
    history, _ = run_demo("segmentation", 3, tmp_path)
    dice = {rnd: r["dice"] for rnd, r in weighted_eval(history).items()}
    assert sorted(dice) == [0, 1, 2, 3]
    assert dice[3] > dice[1] > dice[0] and dice[3] > 0.5  # round 0 is the untrained U-Net


def test_text_study_beats_the_majority_class(tmp_path):
    history, sites = run_demo("text", 2, tmp_path)
    final = weighted_eval(history)[2]
    task = get_task("text")
    reports = [task.load_site(s.data_path, s.name, task.demo_study()).report for s in sites]
    majority = max(sum(r["class-counts"][c] for r in reports) for c in CLASSES) / sum(r["notes"] for r in reports)
    assert final["accuracy"] > majority + 0.1 and final["f1"] > 0.5


def test_multimodal_study_across_sites_with_different_modalities_beats_each_modality_alone(tmp_path):
    # Hospital 1 holds no notes: the note encoder is averaged over the other two, the rest over all three.
    task = get_task("multimodal")
    paths = write_multimodal_sites(tmp_path / "sites", 3, n_patients=300)
    pd.read_csv(paths[0]).drop(columns=["note"]).to_csv(paths[0], index=False)
    sites = [SiteConfig(p.stem, p) for p in paths]
    base = task.demo_study()
    study = dataclasses.replace(
        with_federation(base, rounds=5, min_sites=3), train=dataclasses.replace(base.train, local_epochs=3)
    )
    simulate(study, sites, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["status"] == "completed", history["events"]
    final = weighted_eval(history)[5]
    alone = {m: final[f"accuracy/only-{m}"] for m in ("record", "image", "note")}
    assert final["accuracy"] > max(alone.values()) + 0.05, (final["accuracy"], alone)
    west = [r for r in history["metrics"] if r["kind"] == "eval" and r["round"] == 5 and r["site"] == "hospital-1"]
    assert west[0]["coverage/note"] == 0.0 and west[0]["coverage/image"] > 0.8
