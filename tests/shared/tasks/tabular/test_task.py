"""Tabular task: spec validation, model shapes, and the built-in demo data."""

from __future__ import annotations

import pytest
import torch

from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks import get_task
from shared.tasks.tabular.demo import breast_cancer_table, demo_study, write_demo_sites


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
