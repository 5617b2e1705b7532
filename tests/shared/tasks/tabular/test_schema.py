"""A site's shareable schema: names, types and category labels only, rare categories left out; sites' agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.errors import ConfigError
from shared.tasks.tabular.schema import agreed_data, table_schema


def table(n: int = 40, rare: str = "X", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = ["F", "M"] * (n // 2)
    sex[0] = rare  # seen once: below any small-cell threshold
    return pd.DataFrame(
        {"age": rng.integers(30, 80, n), "sex": sex, "stage": [1, 2] * (n // 2), "outcome": ["no", "yes"] * (n // 2)}
    )


def test_a_schema_holds_names_types_and_frequent_category_labels_only():
    schema = table_schema(table(), "north", "outcome", categorical=["stage"], min_cell=5)
    assert schema["columns"] == {
        "age": {"type": "numeric"},
        "sex": {"type": "categorical", "categories": ["F", "M"], "rare-left-out": True},  # "X" is not named
        "stage": {"type": "categorical", "categories": ["1", "2"], "rare-left-out": False},
        "outcome": {"type": "categorical", "categories": ["no", "yes"], "rare-left-out": False},
    }
    text = str(schema)
    assert "X" not in text and "40" not in text and "20" not in text  # no rare label, no count


def test_sites_that_agree_give_one_data_section_with_the_union_of_categories():
    north = table_schema(table(rare="F"), "north", "outcome", ["stage"])
    south = table_schema(table().assign(sex=["F", "M", "U", "U", "U", "U", "U"] + ["M"] * 33), "south", "outcome")
    south["columns"]["stage"] = north["columns"]["stage"]
    data = agreed_data({"north.json": north, "south.json": south})
    assert data == {
        "label": "outcome",
        "label-type": "binary",
        "classes": ["no", "yes"],
        "features": ["age", "sex", "stage"],
        "categorical": {"sex": ["F", "M", "U"], "stage": ["1", "2"]},
    }


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.drop(columns="age"), "'columns.age' is at site 'north' but not at site 'east'"),
        (lambda t: t.assign(age="old"), "'columns.age' is categorical at site 'east' but numeric at site 'north'"),
    ],
    ids=["missing-column", "other-type"],
)
def test_a_disagreeing_site_is_named_with_its_file_and_the_column(change, named):
    schemas = {
        "north.json": table_schema(table(), "north", "outcome"),
        "east.json": table_schema(change(table()), "east", "outcome"),
    }
    with pytest.raises(ConfigError) as err:
        agreed_data(schemas)
    assert named in str(err.value) and "east.json" in str(err.value)
