"""Study config: parsing, validation errors naming the field, round trips, and Flower's run config."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict

from shared.config import StudyConfig, load_study
from shared.errors import ConfigError
from shared.tasks.tabular.demo import demo_study
from shared.tasks.tabular.spec import data_spec, model_spec

INITIAL_PIN = "federation.initial-model-sha256"


def test_round_trip_through_json_and_dict():
    study = demo_study()
    assert StudyConfig.from_json(study.to_json()) == study
    assert StudyConfig.from_dict(study.to_dict()) == study


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"federation": {"rounds": 0}}, "federation.rounds"),
        ({"federation": {"strategy": "fedmagic"}}, "federation.strategy"),
        ({"federation": {"fraction": 1.5}}, "federation.fraction"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"local-epochs": "two"}}, "train.local-epochs"),
        ({"federation": {"roundz": 3}}, "federation.roundz"),
        ({"federation": {"secure-aggregation": "yes"}}, "federation.secure-aggregation"),
        ({"train": {"class-weights": "inverse"}}, "train.class-weights"),
        ({"train": {"threshold": "f1"}}, "train.threshold"),
        ({"train": {"class-weights": "balanced"}, "privacy": {"mode": "local"}}, "train.class-weights"),
        ({"federation": {"secure-aggregation": "on", "min-sites": 2}}, "federation.min-sites"),
        (
            {"federation": {"secure-aggregation": "on", "min-sites": 3}, "privacy": {"mode": "central-server"}},
            "federation.secure-aggregation",
        ),
        ({"report": {"min-cell": 4}}, "report.min-cell"),  # a study may raise the small-cell bound, never lower it
        ({"report": {"min-cell": 10**6}}, "report.min-cell"),
        ({"report": {"min-cell": True}}, "report.min-cell"),
        ({"federation": {"initial-model-sha256": "a" * 64}}, "federation.initial-model-sha256"),  # pins nothing
        ({"federation": {"initial-model": "m.safetensors", "initial-model-sha256": "A" * 64}}, INITIAL_PIN),
        ({"federation": {"initial-model": "m\x1b[2J.safetensors"}}, "federation.initial-model"),
        ({"federation": {"rounds": 0, "initial-model": "m.safetensors"}, "privacy": {"mode": "local"}}, "privacy.mode"),
    ],
)
def test_bad_values_name_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_dict(raw)
    assert err.value.field == field
    assert field in str(err.value)


def test_pyproject_run_config_is_the_demo_study():
    """`flwr run .` and `medfed-sim` run the same built-in study."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    run_config = flatten_dict(pyproject["tool"]["flwr"]["app"]["config"])
    assert all(not isinstance(v, list) for v in run_config.values())  # Flower's run config holds scalars
    from_pyproject, demo = StudyConfig.from_run_config(run_config), demo_study()
    assert dataclasses.replace(from_pyproject, data={}, model={}) == dataclasses.replace(demo, data={}, model={})
    assert data_spec(from_pyproject) == data_spec(demo)
    assert model_spec(from_pyproject) == model_spec(demo)


def test_comma_separated_lists_from_run_config():
    study = StudyConfig.from_run_config({"model.hidden": "16,8"})
    assert model_spec(study).hidden == [16, 8]
    with pytest.raises(ConfigError, match="model.hidden"):
        model_spec(StudyConfig.from_run_config({"model.hidden": "16,wide"}))


def test_load_study_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("federation = [")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_study(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[federation]\nrounds = -2\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml.*federation\.rounds"):
        load_study(wrong)


def test_only_a_study_with_an_initial_model_may_have_no_rounds_and_it_then_only_evaluates():
    with pytest.raises(ConfigError, match="or 0 with federation.initial-model"):
        StudyConfig.from_dict({"federation": {"rounds": 0}})
    study = StudyConfig.from_dict({"federation": {"rounds": 0, "initial-model": "m.safetensors"}})
    assert study.federation.rounds == 0 and study.federation.average_last == 1


def test_an_evaluation_only_study_at_one_site_needs_no_secure_aggregation_in_a_federation():
    """It aggregates no update, so "auto" is off even where a federation would turn it on (and need 3 sites)."""
    study = StudyConfig.from_dict({"federation": {"rounds": 0, "min-sites": 1, "initial-model": "m.safetensors"}})
    assert study.secure_aggregation(deployed=True) is False


def test_where_submit_found_the_initial_model_is_not_a_study_setting():
    """`flwr run .` with the flat keys: the run config's initial-model-file is the ServerApp's, not the study's."""
    assert StudyConfig.from_run_config({"initial-model-file": "", "name": "flat"}).name == "flat"


def test_a_submitted_study_travels_whole_as_json_in_the_run_config():
    study = dataclasses.replace(demo_study(), name="submitted", data={**demo_study().data, "classes": ["a, b", "c"]})
    assert StudyConfig.from_run_config({"study-json": study.to_json(), "name": "ignored"}) == study


@pytest.mark.parametrize(
    ("federation", "privacy", "deployed", "expected"),
    [
        ({"min-sites": 3}, "local", True, True),  # "auto": on in a federation
        ({"min-sites": 3}, "local", False, False),  # "auto": off in a simulation
        ({"min-sites": 3}, "central-server", True, False),  # "auto": central DP must see each update
        ({"min-sites": 2, "secure-aggregation": "off"}, "off", True, False),
        ({"min-sites": 3, "secure-aggregation": "on"}, "off", False, True),
    ],
)
def test_secure_aggregation_is_on_by_default_in_a_federation(federation, privacy, deployed, expected):
    study = StudyConfig.from_dict({"federation": federation, "privacy": {"mode": privacy}})
    assert study.secure_aggregation(deployed) is expected


def test_a_two_site_study_in_a_federation_must_turn_secure_aggregation_off_explicitly():
    study = StudyConfig.from_dict({"federation": {"min-sites": 2}})
    assert study.secure_aggregation(deployed=False) is False
    with pytest.raises(ConfigError, match='federation.secure-aggregation = "off"') as err:
        study.secure_aggregation(deployed=True)
    assert err.value.field == "federation.min-sites"


@pytest.mark.parametrize(
    "name", ["x/../../../somewhere/file", "/etc/passwd", "a/b", "..", "x..y", "", ".hidden", "a b"]
)
def test_study_names_never_reach_a_path(name):
    """A study's name names folders and files at the server and the sites: only a plain name is accepted."""
    with pytest.raises(ConfigError, match="'name' must be 1-64 letters, digits"):
        StudyConfig(name=name)


@pytest.mark.parametrize("field", ["round-timeout", "connect-timeout"])
@pytest.mark.parametrize("value", ["inf", "+inf", "nan", "-inf", "0"])
def test_timeouts_must_be_finite(tmp_path, field, value):
    path = tmp_path / "study.toml"
    path.write_text(f"[federation]\n{field} = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert err.value.field == f"federation.{field}"
    assert str(err.value) == f"study file {path}: 'federation.{field}' must be a finite number of seconds > 0"


@pytest.mark.parametrize(
    ("federation", "field", "says"),
    [
        (
            {"strategy": "krum", "min-sites": 4},
            "federation.min-sites",
            "needs at least 5 sites in every round (n > 2f + 2)",
        ),
        (
            {"strategy": "multikrum", "min-sites": 6, "byzantine-sites": 2},
            "federation.min-sites",
            "needs at least 7 sites in every round (n > 2f + 2)",
        ),
        (
            {"strategy": "bulyan", "min-sites": 6},
            "federation.min-sites",
            "needs at least 7 sites in every round (n >= 4f + 3)",
        ),
        (
            {"strategy": "fedtrimmedavg", "min-sites": 4, "trimmed-beta": 0.2},
            "federation.trimmed-beta",
            "trims no site",
        ),
        ({"update-norm-median": 0.5}, "federation.update-norm-median", "at least 1"),
        ({"weighting": "by-size"}, "federation.weighting", "must be one of examples, equal"),
        (
            {"strategy": "fedmedian", "secure-aggregation": "on"},
            "federation.strategy",
            "needs each site's own update, which secure aggregation hides",
        ),
        (
            {"max-examples-median": 3, "secure-aggregation": "on"},
            "federation.max-examples-median",
            "needs each site's own update",
        ),
    ],
    ids=["krum", "multikrum", "bulyan", "trimmed-beta", "norm-median", "weighting", "median-secagg", "claims-secagg"],
)
def test_robust_settings_that_cannot_work_are_refused_naming_the_field(federation, field, says):
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_dict({"federation": federation})
    assert err.value.field == field
    assert says in err.value.problem


def test_robust_rules_with_enough_sites_are_accepted_and_turn_auto_secure_aggregation_off():
    krum = StudyConfig.from_dict({"federation": {"strategy": "krum", "min-sites": 5}})
    bulyan = StudyConfig.from_dict({"federation": {"strategy": "bulyan", "min-sites": 7}})
    bounded = StudyConfig.from_dict({"federation": {"update-norm-bound": 2.0}})
    assert not krum.secure_aggregation(deployed=True) and not bulyan.secure_aggregation(deployed=True)
    assert bounded.secure_aggregation(deployed=True)  # a fixed bound: each site clips its own update


@pytest.mark.parametrize("average_last", [0, 21])
def test_average_last_must_lie_between_one_round_and_all_of_them(average_last):
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_dict({"federation": {"rounds": 20, "average-last": average_last}})
    assert err.value.field == "federation.average-last"
    assert "between 1 (the last round's model) and federation.rounds (20)" in err.value.problem
