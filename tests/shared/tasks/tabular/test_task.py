"""Tabular task: spec validation, model shapes, the built-in demo data, class weights and the decision threshold."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError
from shared.metrics import choose_threshold, classification_metrics
from shared.tasks import get_task
from shared.tasks.tabular.demo import breast_cancer_table, demo_study, write_demo_sites
from shared.training import predict


def test_models_have_agreed_shapes():
    task = get_task("tabular")
    for name in ("logreg", "mlp"):
        study = StudyConfig.from_dict({**demo_study().to_dict(), "model": {"name": name}})
        model = task.build_model(study)
        assert model(torch.zeros(5, 30)).shape == (5, 2)
        assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"label": "y", "classes": ["a"], "features": ["x"]}, "data.classes"),
        ({"label": "y", "classes": ["a", "b", "c"], "features": ["x"]}, "data.classes"),
        ({"label": "y", "classes": ["a", "b"], "features": []}, "data.features"),
        ({"label": "y", "classes": ["a", "b"], "features": ["x"], "categorical": {"z": ["1"]}}, "data.categorical.z"),
        ({"label": "y", "classes": ["a", "b"], "features": ["x"], "missing": "guess"}, "data.missing"),
        (
            {"label": "y", "classes": ["a", "b"], "features": ["x"], "validation-fraction": 0.9},
            "data.validation-fraction",
        ),
    ],
)
def test_bad_data_options_name_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        get_task("tabular").check_study(StudyConfig.from_dict({"data": data}))
    assert err.value.field == field


def test_unknown_task_is_clear():
    with pytest.raises(ConfigError, match="not a known task"):
        get_task("genomics")


def test_demo_sites_are_non_iid_and_complete(tmp_path):
    paths = write_demo_sites(tmp_path, 3, seed=2)
    import pandas as pd

    frames = [pd.read_csv(p) for p in paths]
    assert sum(len(f) for f in frames) == len(breast_cancer_table()) == 569
    shares = [(f["diagnosis"] == "malignant").mean() for f in frames]
    assert max(shares) - min(shares) > 0.1


@pytest.fixture(scope="module")
def rare_positives(tmp_path_factory):
    """An imbalanced site (85 "no", 15 "yes", x separating them), its study, and a logistic model that ranks the
    rows right but puts every probability of "yes" far under 0.5."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(85, dtype=int), np.ones(15, dtype=int)]
    path = tmp_path_factory.mktemp("rare") / "site.csv"
    pd.DataFrame({"x": y * 3 + rng.normal(0, 0.5, 100), "y": np.where(y, "yes", "no")}).to_csv(path, index=False)
    study = StudyConfig.from_dict(
        {"model": {"name": "logreg"}, "data": {"label": "y", "classes": ["no", "yes"], "features": ["x"]}}
    )
    task = get_task("tabular")
    model = task.build_model(study)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0], [3.0]]))
        model[0].bias.copy_(torch.tensor([0.0, -12.0]))
    return task, study, task.load_site(path, "site", study), model


def test_the_site_carves_its_validation_split_from_its_train_split(rare_positives):
    _, _, data, _ = rare_positives
    report = data.report
    assert (report["train-rows"], report["validation-rows"], report["test-rows"]) == (64, 16, 20)
    assert (len(data.train), len(data.val), len(data.test)) == (64, 16, 20)
    assert int(data.val.tensors[1].sum()) == 2 and int(data.test.tensors[1].sum()) == 3  # stratified


def test_the_threshold_is_chosen_on_the_validation_split_where_0_5_predicts_one_class(rare_positives):
    task, study, data, model = rare_positives
    cpu = torch.device("cpu")
    at_half = task.evaluate(study, model, dataclasses.replace(data, val=None), cpu)
    assert at_half["predicted-classes"] == 1 and at_half["sensitivity"] == 0.0 and at_half["roc-auc"] > 0.9
    chosen = task.evaluate(study, model, data, cpu)
    _, y_val, p_val = predict(model, data.val, task.loss(), cpu)
    _, y_test, p_test = predict(model, data.test, task.loss(), cpu)
    threshold = choose_threshold(y_val, p_val[:, 1], study.train.threshold)
    expected = classification_metrics(y_test, p_test, ["no", "yes"], threshold)
    assert chosen == {"loss": at_half["loss"], **expected}
    assert chosen["predicted-classes"] == 2 and chosen["balanced-accuracy"] > 0.9
    flipped = TensorDataset(data.val.tensors[0], 1 - data.val.tensors[1])  # a split on which nothing beats chance
    assert task.evaluate(study, model, dataclasses.replace(data, val=flipped), cpu) == at_half


def test_training_weighs_the_sites_rare_class_except_under_local_dp(rare_positives):
    task, study, data, _ = rare_positives
    loss = task.train_loss(study, data.train)
    assert torch.allclose(loss.weight, torch.tensor([64 / (2 * 54), 64 / (2 * 10)]))
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local"))
    assert type(task.train_loss(private, data.train)) is torch.nn.CrossEntropyLoss
    with pytest.raises(ConfigError, match="DP-SGD's accounting does not cover"):
        StudyConfig.from_dict({**private.to_dict(), "train": {"class-weights": "balanced"}})


def test_validate_notes_what_local_dp_leaves_out_of_a_sites_epsilon():
    """Each site's own standardisation and imputation statistics are outside ε (README, 'What ε covers'): a study
    that leaves them to the sites is told so, and one that states its preparation is not."""
    task, raw = get_task("tabular"), demo_study().to_dict()

    def notes(privacy: dict, **data) -> str:
        study = StudyConfig.from_dict({**raw, "privacy": privacy, "data": {**raw["data"], **data}})
        return " ".join(task.study_notes(study))

    local = {"mode": "local", "epsilon": 3.0}
    assert "the means and SDs of its 30 standardised numeric feature(s)" in notes(local)
    assert "medians and modes" in notes(local, missing="impute")
    scaled = {c: [0.0, 1.0] for c in raw["data"]["features"][:29]}
    assert "the means and SDs of its 1 standardised" in notes(local, scale=scaled)  # one column left to the site
    assert notes(local, standardize=False) == ""  # the study states the preparation: nothing to say
    assert notes({"mode": "off"}) == ""  # no ε to qualify
