"""The survival task: its models and DP rules, its metrics (unreliable splits flagged), and the built-in demo."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from shared.assessment import CURVE_POINTS, CURVES, SUPPRESSED, read_assessment
from shared.config import PrivacyConfig
from shared.errors import ConfigError, MedfedError
from shared.privacy.journal import Journal, LedgerFiles
from shared.tasks import build_model, get_task
from shared.tasks.survival import BASELINE
from shared.tasks.survival.curves import Predictions
from shared.tasks.survival.demo import gbsg2_table, write_demo_sites
from shared.tasks.survival.metrics import survival_metrics
from shared.tasks.survival.spec import data_spec
from shared.training import make_loader, make_optimizer, train_epochs
from tests.shared.tasks.private import train_private
from tests.shared.tasks.survival.tables import survival_study, survival_table, write

TASK = get_task("survival")
pytest.importorskip("sksurv")


def test_models_have_the_agreed_output_layer():
    for name, hidden, width in (("cox", [], 1), ("cox", [8], 1), ("discrete", [], 6), ("discrete", [8], 6)):
        study = survival_study(name)
        study = dataclasses.replace(study, model={"name": name, "hidden": hidden})
        assert build_model(study)(torch.zeros(5, 4)).shape == (5, width)


def test_local_dp_refuses_cox_and_says_why_and_what_to_use():
    study = dataclasses.replace(survival_study("cox"), privacy=PrivacyConfig(mode="local"))
    with pytest.raises(ConfigError) as err:
        TASK.check_study(study)
    assert err.value.field == "privacy.mode"
    assert "couples the patients of a batch" in err.value.problem and "model.name = 'discrete'" in err.value.problem


@pytest.mark.parametrize("proportional", [False, True])
def test_discrete_time_model_trains_under_local_dp_and_the_site_journal_records_it(tmp_path, proportional):
    study = dataclasses.replace(survival_study("discrete"), privacy=PrivacyConfig(mode="local", epsilon=3.0))
    study = dataclasses.replace(study, model={**study.model, "proportional": proportional})
    TASK.check_study(study)
    data = TASK.load_site(write(survival_table(200), tmp_path), "h1", study)
    before = build_model(study)
    private, loss, epsilon = train_private(study, data, tmp_path / "ledgers")
    assert np.isfinite(loss) and 0 < epsilon < 3.0
    trained = private._module.state_dict()
    if proportional:  # one shared risk: the copies to each interval stay unit weights, the baselines learn
        assert torch.equal(trained["1.weight"], torch.ones(6, 1)) and not torch.equal(
            trained["1.bias"], before.state_dict()["1.bias"]
        )
    rounds = Journal.open(LedgerFiles.at(tmp_path / "ledgers", "h1"), "h1").rounds()
    assert [(r["study"], r["round"], r["epsilon"]) for r in rounds] == [(study.name, 1, epsilon)]


@pytest.mark.parametrize("model", ["cox", "discrete"])
def test_a_trained_model_ranks_patients_and_reports_aggregates(tmp_path, model):
    study = survival_study(model)
    data = TASK.load_site(write(survival_table(400, effect=1.5), tmp_path), "h1", study)
    torch.manual_seed(0)
    net = build_model(study)
    loader = make_loader(data.train, 32, 0)
    train_epochs(net, loader, TASK.loss(study), make_optimizer(net, study.train), 10, torch.device("cpu"))
    metrics = TASK.evaluate(study, net, data, torch.device("cpu"))
    assert metrics["c-index"] > 0.7 and metrics["uno-c-index"] > 0.65
    assert 0 < metrics["integrated-brier"] < 0.25
    assert {"auc@250", "km@250", "predicted@250"} <= set(metrics)
    assert abs(metrics["km@500"] - metrics["predicted@500"]) < 0.1  # calibrated next to the site's Kaplan–Meier
    assert all(np.isfinite(v) for v in metrics.values())
    # What the site keeps for `medfed-site predict` gives its held-out patients the survival its evaluation reported.
    kept = TASK.final_statistics(study, net, data, torch.device("cpu"))
    assert set(kept) == ({BASELINE} if model == "cox" else set())
    with torch.no_grad():
        outputs = net(data.test.tensors[0]).double().numpy()
    columns = TASK.prediction_columns(study, outputs, kept)
    assert list(columns) == ["risk", *(f"survival@{t:g}" for t in study.data["horizons"])]
    for t in study.data["horizons"]:
        assert columns[f"survival@{t:g}"].mean() == pytest.approx(metrics[f"predicted@{t:g}"], abs=1e-9)
    # The report's intervals (each headline metric's bootstrap interval holds its value) and curves: all it sends.
    assessment = read_assessment(TASK.assess(study, net, data, torch.device("cpu")))
    intervals = {f"ci-{m}-{end}" for m in ("c-index", "integrated-brier") for end in ("low", "high")}
    assert set(assessment) == intervals | set(CURVES)
    for metric in ("c-index", "integrated-brier"):
        low, high = assessment[f"ci-{metric}-low"], assessment[f"ci-{metric}-high"]
        assert low < metrics[metric] < high and high - low < 0.25


def test_a_cox_site_keeps_no_baseline_past_its_follow_up_and_predicts_nothing_there(tmp_path):
    study = survival_study("cox", horizons=[250.0, 5000.0])  # the table's follow-up ends before 3000
    data = TASK.load_site(write(survival_table(200), tmp_path), "h1", study)
    net = build_model(study)
    kept = TASK.final_statistics(study, net, data, torch.device("cpu"))
    assert kept[BASELINE]["5000"] is None and 0 < kept[BASELINE]["250"] < 1
    columns = TASK.prediction_columns(study, np.array([[0.0], [1.0]]), kept)
    assert np.isnan(columns["survival@5000"]).all()
    assert columns["survival@250"][0] == pytest.approx(kept[BASELINE]["250"])  # S0 ** exp(0)
    assert columns["survival@250"][1] < columns["survival@250"][0]  # a higher risk: lower survival
    assert list(TASK.prediction_columns(study, np.array([[0.0]]), {})) == ["risk"]  # kept before baselines were


def test_a_held_out_split_with_too_few_events_is_flagged_not_scored(tmp_path):
    table = survival_table(100)
    study = survival_study("cox", **{"min-test-events": 100})
    data = TASK.load_site(write(table, tmp_path), "h1", study)
    metrics = TASK.evaluate(study, build_model(study), data, torch.device("cpu"))
    assert metrics["c-index-unreliable"] == 1.0
    assert not {"c-index", "uno-c-index", "integrated-brier"} & set(metrics)
    assessed = TASK.assess(study, build_model(study), data, torch.device("cpu"))
    assert not [k for k in assessed if k.startswith("ci-")]  # no interval either, only the curves


def test_kaplan_meier_values_with_few_patients_at_risk_are_suppressed(tmp_path):
    study = survival_study("cox", **{"km-min-at-risk": 15})
    data = TASK.load_site(write(survival_table(200), tmp_path), "h1", study)
    metrics = TASK.evaluate(study, build_model(study), data, torch.device("cpu"))
    at_risk = {h: int((data.test.tensors[1][:, 0] >= h).sum()) for h in (250, 500, 1000)}
    for h, n in at_risk.items():
        assert (f"km@{h}" in metrics) == (n >= 15)
    assert min(at_risk.values()) < 15 <= max(at_risk.values())
    # The report's curves: the same rule at each of the grid's times, up to the last horizon.
    curves = read_assessment(TASK.assess(study, build_model(study), data, torch.device("cpu")))
    times = np.asarray(curves["curve-times"])
    assert len(times) == CURVE_POINTS and times[-1] == 1000
    at_risk_on_grid = (data.test.tensors[1][:, 0].numpy()[None, :] >= times[:, None]).sum(axis=1)
    assert ((np.asarray(curves["curve-km"]) == SUPPRESSED) == (at_risk_on_grid < 15)).all()
    assert curves["curve-km"][0] == pytest.approx(km_by_hand(data, times[0]))
    assert all(0 < v <= 1 for v in curves["curve-predicted"])


def km_by_hand(data, t: float) -> float:
    """The held-out split's Kaplan–Meier survival at `t`, computed by hand."""
    time, event = data.test.tensors[1][:, 0].numpy(), data.test.tensors[1][:, 1].numpy()
    survival = 1.0
    for u in np.unique(time[(event > 0.5) & (time <= t)]):
        survival *= 1 - ((time == u) & (event > 0.5)).sum() / (time >= u).sum()
    return survival


def test_a_study_cannot_lower_kaplan_meier_suppression_below_the_small_cell_floor():
    with pytest.raises(ConfigError, match="data.km-min-at-risk.*small-cell"):
        data_spec(survival_study("cox", **{"km-min-at-risk": 1}))


def test_the_survival_loss_needs_the_study():
    with pytest.raises(TypeError, match="pass the study"):
        TASK.loss()


def test_demo_sites_hold_every_gbsg2_patient_with_skewed_event_rates(tmp_path):
    frames = [pd.read_csv(p) for p in write_demo_sites(tmp_path, 3)]
    assert sum(len(f) for f in frames) == len(gbsg2_table()) == 686
    rates = [f["event"].mean() for f in frames]
    assert max(rates) - min(rates) > 0.1
    TASK.check_study(TASK.demo_study())


def test_a_split_without_comparable_pairs_is_flagged_and_diverged_risks_are_refused():
    spec = data_spec(survival_study("cox", **{"min-test-events": 1}))
    train = np.array([[100.0, 1.0], [200.0, 0.0], [300.0, 1.0]])
    test = np.array([[50.0, 0.0], [80.0, 0.0], [400.0, 1.0]])  # the only event after everyone else's follow-up
    times = np.array(spec.horizons)
    predicted = Predictions(np.array([0.1, 0.2, 0.3]), np.full((3, len(times)), 0.5), times)
    assert survival_metrics(spec, train, test, predicted)["c-index-unreliable"] == 1.0
    diverged = Predictions(np.array([0.1, np.nan, 0.3]), np.full((3, len(times)), 0.5), times)
    with pytest.raises(MedfedError, match="not finite"):
        survival_metrics(spec, train, test, diverged)


def test_a_horizon_before_the_first_held_out_event_has_no_auc_and_no_warning():
    spec = data_spec(survival_study("cox", **{"min-test-events": 1}))  # horizons 250, 500, 1000
    train = np.array([[t, float(t % 200 == 0)] for t in range(100, 1600, 50)])
    test = np.array([[100.0, 0.0], [150.0, 0.0], [600.0, 1.0], [700.0, 1.0], [1100.0, 1.0], [1200.0, 0.0]])
    times = np.array(spec.horizons)
    risk = np.array([0.1, 0.2, 0.9, 0.8, 0.5, 0.3])
    predicted = Predictions(risk, np.clip(1 - risk[:, None] * times[None, :] / 2000, 0, 1), times)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-survival's 'invalid value encountered in divide', once
        metrics = survival_metrics(spec, train, test, predicted)
    assert "auc@250" not in metrics and "auc@500" not in metrics  # no event by then: undefined, not NaN
    assert 0 <= metrics["auc@1000"] <= 1
