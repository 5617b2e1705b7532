"""A site's survival table: the tabular feature handling, the stratified split, and every bad time or event."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from shared.errors import ConfigError, DataError
from shared.tasks import get_task
from tests.shared.tasks.survival.tables import survival_study, survival_table, write

TASK = get_task("survival")


def test_a_site_table_is_encoded_like_a_tabular_one_and_split_on_the_event(tmp_path):
    table = survival_table(200)
    table.loc[5, "age"] = np.nan  # dropped under the default missing policy
    data = TASK.load_site(write(table, tmp_path), "h1", survival_study())
    x, outcome = data.train.tensors
    assert x.shape[1] == 4  # age, and stage one-hot over the agreed I, II, III
    assert len(data.train) + len(data.test) == 199 == data.report["rows-used"]
    rate = table["died"].mean()
    for split in (data.train, data.test):
        assert split.tensors[1][:, 1].float().mean().item() == pytest.approx(rate, abs=0.02)
    assert (outcome[:, 0] >= 0).all()


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("days", -3, "1 negative time(s), first at data row 8"),
        ("days", None, "1 missing time(s), first at data row 8"),
        ("days", "soon", "1 non-numeric value(s) in a numeric column, first at data row 8"),
        ("died", 2, "1 value(s) are not 0 (censored) or 1 (event observed), first at data row 8"),
        ("died", "yes", "1 value(s) are not 0 (censored) or 1 (event observed), first at data row 8"),
        ("died", None, "1 value(s) are not 0 (censored) or 1 (event observed), first at data row 8"),
    ],
)
def test_bad_times_and_events_name_site_file_column_and_first_row(tmp_path, column, value, problem):
    table = survival_table(60).astype({column: object})
    table.loc[7, column] = value
    path = write(table, tmp_path)
    with pytest.raises(DataError) as err:
        TASK.load_site(path, "hospital-2", survival_study())
    assert str(err.value) == f"site 'hospital-2', file '{path}', column '{column}': {problem}"


def test_a_site_without_training_events_is_refused_by_name(tmp_path):
    table = survival_table(60)
    table["died"] = 0
    path = write(table, tmp_path)
    with pytest.raises(DataError, match=r"site 'h1', file .*, column 'died': fewer events in its train split"):
        TASK.load_site(path, "h1", survival_study())
    # A study may let such a site sit training out instead: it loads, says why, and still evaluates.
    data = TASK.load_site(path, "h1", survival_study(**{"too-few": "sit-out"}))
    assert data.sits_out.startswith('sits training out (data.too-few = "sit-out"): fewer events in its train split')
    assert data.sits_out in data.report["notes"]
    assert not TASK.load_site(write(survival_table(60), tmp_path, "h2.csv"), "h2", survival_study()).sits_out


def test_rows_dropped_for_a_missing_feature_are_said_and_a_site_they_leave_too_small_is_told_the_remedy(tmp_path):
    table = survival_table(60)
    table.loc[:2, "age"] = np.nan
    report = TASK.load_site(write(table, tmp_path), "h1", survival_study()).report
    assert report["notes"][-1] == (
        '3 of 60 rows (5%) dropped: a missing feature value (data.missing = "drop"), most in age (3); '
        'data.missing = "impute" keeps them'
    )
    table.loc[:45, "age"] = np.nan
    path = write(table, tmp_path)
    with pytest.raises(DataError) as err:
        TASK.load_site(path, "h1", survival_study())
    assert str(err.value).endswith(
        'too few to train on; rows missing a feature value were dropped (data.missing = "drop"), and '
        'data.missing = "impute" keeps them'
    )
    assert len(TASK.load_site(path, "h1", survival_study(missing="impute")).train) > 0


def test_missing_time_column_is_named(tmp_path):
    path = write(survival_table(60).drop(columns=["days"]), tmp_path)
    with pytest.raises(DataError, match="column 'days': column not found"):
        TASK.load_site(path, "h1", survival_study())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"time": ""}, "data.time"),
        ({"event": "days"}, "data.event"),
        ({"features": ["age", "days"]}, "data.features"),
        ({"cut-points": [5.0, 2.0]}, "data.cut-points"),
        ({"horizons": [-1.0]}, "data.horizons"),
        ({"horizons": [365.0, float("inf")]}, "data.horizons"),  # the survival curves' grid ends at the last
        ({"cut-points": [100.0, float("inf")]}, "data.cut-points"),
        ({"cut-points": []}, "data.cut-points"),  # the discrete model needs them
        ({"cut-points": [float(t) for t in range(1, 10**6)]}, "data.cut-points"),  # a hostile study's model size
        ({"horizons": [float(t) for t in range(1, 1000)]}, "data.horizons"),
    ],
)
def test_bad_data_options_name_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        TASK.check_study(survival_study("discrete", **data))
    assert err.value.field == field


def test_inferred_options_describe_the_table(tmp_path):
    table = survival_table(300)
    options = TASK.infer_data(write(table, tmp_path), "sim", {"time": "days", "event": "died"})
    assert options["features"] == ["age", "stage"] and options["categorical"] == {"stage": ["I", "II", "III"]}
    assert options["cut-points"] == sorted(options["cut-points"]) and len(options["cut-points"]) == 10
    assert len(options["horizons"]) == 3 and options["horizons"][-1] < table["days"].max()


@pytest.mark.parametrize(
    ("column", "values", "problem"),
    [
        ("died", {1: "yes", 0: "no"}, "49 value(s) are not 0 (censored) or 1 (event observed), first at data row 2"),
        ("days", None, "49 value(s) are not numbers (a follow-up time is a duration in one unit, such as days, not a"),
    ],
)
def test_a_time_or_event_column_of_the_wrong_kind_is_refused_by_row_when_options_are_inferred(
    tmp_path, column, values, problem
):
    """Both once read as 'marks no event (1)', a study config error: an event of yes/no, a time of dates."""
    table = survival_table(50)
    first = table.loc[0, column]
    if values is None:
        table[column] = (pd.Timestamp("2000-01-01") + pd.to_timedelta(table[column], unit="D")).dt.strftime("%Y-%m-%d")
    else:
        table[column] = table[column].map(values)
    table[column] = table[column].astype(object)
    table.loc[0, column] = first
    with pytest.raises(DataError) as caught:
        TASK.infer_data(write(table, tmp_path), "sim", {"time": "days", "event": "died"})
    assert caught.value.column == column and caught.value.problem.startswith(problem)


def test_a_split_column_gives_the_held_out_split_as_marked(tmp_path):
    table = survival_table(100)
    table["fold"] = np.where(np.arange(100) % 4 == 0, "test", "Train")
    data = TASK.load_site(write(table, tmp_path), "h1", survival_study(**{"split-column": "fold"}))
    assert (len(data.train), len(data.test)) == (75, 25)
    assert data.test.tensors[1][:, 0].tolist() == table["days"][::4].astype("float32").tolist()


@pytest.mark.parametrize(
    ("marks", "problem"),
    [
        ({7: "validation"}, "1 value(s) are not train or test, first at data row 8"),
        ({7: None}, "1 value(s) are not train or test, first at data row 8"),
        ({}, "marks no train row or no test row"),
    ],
)
def test_a_bad_split_column_names_its_first_row(tmp_path, marks, problem):
    table = survival_table(60)
    table["fold"] = "train"
    for row, mark in marks.items():
        table.loc[row, "fold"] = mark
    with pytest.raises(DataError, match=re.escape(problem)) as caught:
        TASK.load_site(write(table, tmp_path), "h1", survival_study(**{"split-column": "fold"}))
    assert "column 'fold'" in str(caught.value) and "h1" in str(caught.value)


def test_the_split_column_cannot_be_a_feature_or_the_outcome():
    with pytest.raises(ConfigError, match="data.split-column"):
        TASK.check_study(survival_study(**{"split-column": "age"}))
    with pytest.raises(ConfigError, match="data.split-column"):
        TASK.check_study(survival_study(**{"split-column": "days"}))


def test_a_split_column_named_in_the_hints_is_no_inferred_feature(tmp_path):
    table = survival_table(60).assign(fold="train")
    inferred = TASK.infer_data(write(table, tmp_path), "h1", {"time": "days", "event": "died", "split-column": "fold"})
    assert "fold" not in inferred["features"] and inferred["split-column"] == "fold"


def test_a_held_out_split_with_too_few_events_for_a_c_index_is_flagged_in_the_local_report(tmp_path):
    table = survival_table(60)
    assert "held-out-caveat" not in TASK.load_site(write(table, tmp_path), "h1", survival_study()).report
    report = TASK.load_site(write(table, tmp_path), "h1", survival_study(**{"min-test-events": 50})).report
    events = int(report["held-out-caveat"].split("held-out split of ")[1].split(" ")[0])
    assert events < 50 and report["held-out-caveat"] == (
        f"held-out split of {events} event(s) (under data.min-test-events = 50), so its C-index is not computed"
    )
    assert report["notes"][-1] == f"{report['held-out-caveat']}: its metrics are unreliable"
