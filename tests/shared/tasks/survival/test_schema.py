"""A survival site's shareable schema: its features as a table's, its time and event columns by name only; sites'
agreement on them."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.tasks.survival.schema import agreed_survival_data, survival_schema
from tests.shared.tasks.survival.tables import survival_table


def test_a_schema_names_the_time_and_event_and_describes_no_value_of_theirs():
    schema = survival_schema(survival_table(60), "north", "days", "died", min_cell=5)
    assert schema["time"] == "days" and schema["event"] == "died" and schema["task"] == "survival"
    assert schema["columns"] == {
        "age": {"type": "numeric"},
        "stage": {"type": "categorical", "categories": ["I", "II", "III"], "rare-left-out": False},
    }
    with pytest.raises(ConfigError, match="data.event.*'dead' is not in the table"):
        survival_schema(survival_table(60), "north", "days", "dead")


def test_sites_agree_on_time_event_features_and_the_union_of_categories_or_are_named():
    north = survival_schema(survival_table(60), "north", "days", "died")
    south = survival_schema(survival_table(60, seed=1).assign(stage="II"), "south", "days", "died")
    data = agreed_survival_data({"north.json": north, "south.json": south})
    assert data == {
        "time": "days",
        "event": "died",
        "features": ["age", "stage"],
        "categorical": {"stage": ["I", "II", "III"]},
    }
    renamed = survival_schema(survival_table(60).rename(columns={"days": "months"}), "east", "months", "died")
    with pytest.raises(ConfigError, match="'time' differs: site 'east' .* name 'months' and 'days'"):
        agreed_survival_data({"north.json": north, "east.json": renamed})
    tabular = {**north, "task": "tabular", "label": "died"}
    with pytest.raises(ConfigError, match="is not a survival schema"):
        agreed_survival_data({"north.json": north, "t.json": tabular})
