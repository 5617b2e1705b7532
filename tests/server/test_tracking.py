"""MLflow tracking: a real local store holds the study's parameters, per-site and weighted metrics per round, ε and
the outputs, read back through MLflow's client; a store that fails never stops the study."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from server.loop import run_study
from server.outputs import StudyOutputs
from server.tracking import STATE, Tracker, row_metrics, tracking_uri
from shared.config import StudyConfig, TrackingConfig
from shared.errors import ConfigError
from shared.tasks.tabular.demo import demo_study
from tests.conftest import with_federation
from tests.localgrid import LocalGrid, run_in_process

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The demo study, one round over 3 in-process sites, tracked in a local store in its output folder."""
    root = tmp_path_factory.mktemp("tracked")
    study = dataclasses.replace(
        with_federation(demo_study(), rounds=1, min_sites=3),
        tracking=TrackingConfig(mlflow="local", experiment="medfed-test"),
    )
    history = run_in_process(study, root / "run", root / "sites", root / "ledgers")
    return study, root / "run", history


def test_the_run_holds_params_metrics_per_site_and_weighted_and_the_outputs(tracked):
    study, folder, history = tracked
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(study, folder))
    experiment = client.get_experiment_by_name("medfed-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["medfed.status"] == history.status == "completed"
    assert run.data.params["federation.rounds"] == "1" and run.data.params["task"] == "tabular"
    assert run.data.params["data.classes"] == '["benign", "malignant"]'
    site_accuracy = client.get_metric_history(run.info.run_id, "site/hospital-1/accuracy")
    # Evaluations of the round-0 (initial) and final (round-1) models.
    assert sorted(m.step for m in site_accuracy) == [0, 1]
    final = [r for r in history.rows if r["kind"] == "eval" and r["round"] == 1]
    expected = {r["site"]: r["accuracy"] for r in final}
    assert [m.value for m in site_accuracy if m.step == 1] == [pytest.approx(expected["hospital-1"])]
    assert run.data.metrics["accuracy"] == pytest.approx(expected["weighted"])
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "site/hospital-3/train-loss")) == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.safetensors", "study.json", "history.json"} <= artifacts
    assert (folder / "mlflow-artifacts").is_dir()  # the local store keeps its artifacts in the output folder too


def test_epsilon_per_site_and_central_dp_become_their_own_metrics():
    row = {"round": 3, "site": "north", "kind": "train", "dp-epsilon": 1.5, "num-examples": 40, "train-loss": 0.2}
    assert set(row_metrics(row)) == {
        ("site/north/dp-epsilon", 1.5, 3),
        ("site/north/train-num-examples", 40.0, 3),
        ("site/north/train-loss", 0.2, 3),
    }
    central = {"round": 2, "site": "central", "kind": "privacy", "epsilon": 0.7}
    assert row_metrics(central) == [("central-dp/epsilon", 0.7, 2)]
    assert row_metrics({**central, "site": "weighted"}) == []


def test_a_resumed_study_logs_into_the_same_run_and_no_round_twice(tracked):
    study, folder, history = tracked
    again = Tracker.open(study, folder)
    assert again.client is not None and again.logged == len(history.rows)
    again.log_rows(history.rows)  # nothing new: nothing logged
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(study, folder))
    assert len(client.get_metric_history(again.run_id, "site/hospital-1/accuracy")) == 2
    assert (folder / STATE).is_file()


def test_a_failing_store_warns_and_the_study_completes(study, demo_sites, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    failing = dataclasses.replace(
        with_federation(study, rounds=1), tracking=TrackingConfig(mlflow=f"sqlite:///{blocked}/mlflow.db")
    )
    with caplog.at_level(logging.WARNING, logger="medfed.server"):
        _, history = run_study(LocalGrid(demo_sites), failing, StudyOutputs(tmp_path / "run"))
    assert history.status == "completed"
    assert (tmp_path / "run" / "model.safetensors").is_file()
    warnings = [r.getMessage() for r in caplog.records if "MLflow tracking" in r.getMessage()]
    assert len(warnings) == 1 and "the study goes on untracked" in warnings[0]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("ftp://host/x", "must be empty (off)"),
        ("https://user:secret@mlflow.example.org", "must not hold a user name or password"),
        ("x" * 2000, "at most 1024 characters"),
    ],
)
def test_a_bad_tracking_uri_is_refused_naming_the_field(uri, problem):
    with pytest.raises(ConfigError, match="tracking.mlflow") as caught:
        StudyConfig.from_dict({"tracking": {"mlflow": uri}})
    assert problem in str(caught.value)
