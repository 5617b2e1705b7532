"""A study that starts from a pinned model file, or only evaluates it at every site (external validation): the sites
score exactly that model, and a file that is missing, changed or of another model stops the study by name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from safetensors.numpy import load_file, save_file

from client.kept import load_kept
from client.site import SiteConfig
from server.app import build_server_app
from server.history import final_site_metrics
from server.loop import run_study
from server.outputs import StudyOutputs
from shared.arrays import model_arrays, read_model_file
from shared.config import INITIAL_MODEL_FILE, StudyConfig
from shared.errors import ConfigError
from shared.initial import beside, initial_weights, starting_model, weights_sha256
from shared.tasks.tabular.demo import demo_study
from tests.conftest import set_task_identity, with_federation
from tests.localgrid import LocalGrid, run_in_process
from tests.shared.tasks.survival.tables import survival_study


def sha256(path: Path) -> str:
    """The SHA-256 of the weights in a model file: a study's pin."""
    return weights_sha256(read_model_file(path))


def from_model(study: StudyConfig, path: Path, rounds: int, name: str, pin: str | None = None) -> StudyConfig:
    """`study` renamed, starting from (rounds = 0: only evaluating) the model file at `path`, pinned."""
    pinned = sha256(path) if pin is None else pin
    changed = with_federation(study, rounds=rounds, initial_model=str(path), initial_model_sha256=pinned)
    return dataclasses.replace(changed, name=name)


def metrics(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Each site's final scores, less what the run measured of itself (its compute time and memory)."""
    return {
        site: {k: v for k, v in scores.items() if k not in ("compute-s", "peak-rss-mb")}
        for site, scores in final_site_metrics(rows).items()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The built-in study, one round over its 3 hospitals in process: its model file and its history."""
    root = tmp_path_factory.mktemp("initial")
    study = with_federation(demo_study(), rounds=1)
    history = run_in_process(study, root / "first", root / "sites", root / "ledgers")
    assert history.status == "completed"
    return root, study, root / "first" / "model.safetensors", history


def test_an_evaluation_only_study_scores_the_given_model_exactly_as_its_own_study_did(trained, tmp_path):
    root, study, model, first = trained
    # The pin is on the model card of the study that made the model.
    pin = json.loads((model.parent / "model-card.json").read_text())["sha256"]["weights"]
    evaluation = from_model(study, model, rounds=0, name="external", pin=pin)
    history = run_in_process(evaluation, tmp_path / "run", tmp_path / "sites", tmp_path / "ledgers")
    assert history.status == "completed"
    assert not [r for r in history.rows if r["kind"] == "train"] and not history.timings  # nothing was trained
    assert metrics(history.rows) == metrics(first.rows)  # the same model on the same sites' held-out rows
    released, given = load_file(str(tmp_path / "run" / "model.safetensors")), load_file(str(model))
    assert released.keys() == given.keys() and all(np.array_equal(released[k], given[k]) for k in given)
    card = json.loads((tmp_path / "run" / "model-card.json").read_text())
    assert card["training"]["initial-model-sha256"] == evaluation.federation.initial_model_sha256
    assert "the model was trained elsewhere (its initial model); these sites only evaluated it" in card["limitations"]
    # Each site kept what `medfed-site predict` needs, though it never trained in this study.
    site = SiteConfig("hospital-1", tmp_path / "sites" / "hospital-1.csv", ledger_dir=tmp_path / "ledgers")
    assert {"threshold", "means", "stds"} <= set(load_kept(site, evaluation))


def test_a_study_from_an_initial_model_starts_round_1_from_it(trained, tmp_path):
    root, study, model, first = trained
    history = run_in_process(from_model(study, model, rounds=1, name="warm"), tmp_path / "run", root / "sites", root)
    round_0 = {r["site"]: r for r in history.rows if r["kind"] == "eval" and r["round"] == 0}
    final = metrics(first.rows)
    assert {s: round_0[s]["accuracy"] for s in final} == {s: m["accuracy"] for s, m in final.items()}


def test_a_changed_model_file_stops_the_study_before_round_1_and_saves_no_model(trained, tmp_path):
    root, study, model, _ = trained
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(model.read_bytes())
    pinned = from_model(study, copy, rounds=1, name="changed")
    weights = load_file(str(model))
    first_key = sorted(weights)[0]
    weights[first_key] = weights[first_key] + 1e-6  # changed after the study was checked
    save_file(weights, str(copy))
    history = run_in_process(pinned, tmp_path / "run", root / "sites", root)
    assert history.status.startswith("stopped: ") and "'federation.initial-model-sha256'" in history.status
    assert sha256(copy) in history.status and not history.timings
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_the_server_app_reads_the_model_where_submit_found_it(trained, tmp_path, monkeypatch):
    """`medfed-server submit` resolves a relative initial-model against the study file and hands the ServerApp, which
    runs in the SuperLink's folder, the absolute path in the run config."""
    root, study, model, first = trained
    evaluation = dataclasses.replace(
        from_model(study, model, rounds=0, name="submitted"), output_dir=str(tmp_path / "outputs")
    )
    evaluation = with_federation(evaluation, initial_model="model.safetensors", min_sites=3)
    monkeypatch.chdir(tmp_path)  # where no model.safetensors is
    sites = [SiteConfig(f"hospital-{i}", root / "sites" / f"hospital-{i}.csv", ledger_dir=tmp_path) for i in (1, 2, 3)]
    run_config = {"study-json": evaluation.to_json(), INITIAL_MODEL_FILE: str(model)}
    set_task_identity()
    build_server_app()(LocalGrid(sites), Context(7, 0, {}, RecordDict(), run_config))
    (history,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs").glob("submitted-*/history.json")]
    assert history["status"] == "completed"
    assert metrics(history["metrics"]) == metrics(first.rows)


def test_the_seeded_start_is_the_study_s_own_model_when_it_names_no_file():
    study = demo_study()
    one, two = starting_model(study).state_dict(), starting_model(study).state_dict()
    assert all(np.array_equal(one[k].numpy(), two[k].numpy()) for k in one)


def test_a_missing_pin_is_refused_with_the_file_s_own_hash_to_copy(trained):
    _, study, model, _ = trained
    unpinned = with_federation(study, initial_model=str(model))
    with pytest.raises(ConfigError, match=f'initial-model-sha256 = "{sha256(model)}"'):
        initial_weights(unpinned)


def test_a_missing_file_and_another_study_s_model_are_named(trained, tmp_path):
    _, study, model, _ = trained
    with pytest.raises(ConfigError, match=r"nowhere.safetensors: 'federation.initial-model' does not exist"):
        initial_weights(from_model(study, model, rounds=1, name="s", pin="0" * 64), Path("nowhere.safetensors"))
    wider = StudyConfig.from_dict({**study.to_dict(), "model": {"name": "mlp", "hidden": [7]}})
    with pytest.raises(ConfigError, match=r"model file .*'federation.initial-model' is not this study's model"):
        starting_model(from_model(wider, model, rounds=1, name="s"))


def test_a_relative_initial_model_is_read_from_the_study_file_s_folder(tmp_path):
    study = with_federation(demo_study(), initial_model="models/m.safetensors")
    assert beside(study, tmp_path / "studies" / "s.toml") == tmp_path / "studies" / "models" / "m.safetensors"
    assert beside(demo_study(), tmp_path / "s.toml") is None


def test_a_model_whose_outputs_a_setup_step_defined_needs_that_step_s_results_in_the_study(tmp_path):
    """A discrete-time survival model's outputs are its study's intervals: new federated cut points would relabel
    them. The study must list the cut points the model was trained with."""
    listed = survival_study("discrete")
    path = tmp_path / "model.safetensors"
    StudyOutputs(tmp_path).save_model(path.name, model_arrays(starting_model(listed)))
    grid = {"cut-points": [], "cut-grid-max": 3000.0, "cut-grid-bins": 100, "cut-intervals": 6}
    asks = StudyConfig.from_dict({**listed.to_dict(), "data": {**listed.data, **grid}})
    assert initial_weights(from_model(listed, path, rounds=1, name="s")) is not None
    again = from_model(with_federation(asks, min_sites=1), path, rounds=1, name="s")
    with pytest.raises(ConfigError, match="copy the setup's results"):
        initial_weights(again)
    history = run_study(LocalGrid([]), again, StudyOutputs(tmp_path / "run"))[1]
    assert history.status.startswith("stopped: federation.initial-model names a model trained with its own")


def test_a_float64_model_file_is_sent_as_saved_so_the_sites_pin_check_holds(trained, tmp_path):
    """Flower's FedAdam aggregates in float64, so its studies save float64 weights: they travel as float32, and the pin
    is taken over that form, so the sites' check holds."""
    root, study, model, first = trained
    wide = tmp_path / "model.safetensors"
    save_file({k: v.astype(np.float64) for k, v in load_file(str(model)).items()}, str(wide))
    history = run_in_process(from_model(study, wide, rounds=0, name="wide"), tmp_path / "run", root / "sites", root)
    assert history.status == "completed", history.events
    assert metrics(history.rows) == metrics(first.rows)
