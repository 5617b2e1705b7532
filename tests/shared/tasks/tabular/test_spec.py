"""Label inference (each value's rows, a value far rarer than the others flagged rather than made a class), and the
study's own scaling checked."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.config import parse_section
from shared.errors import ConfigError, DataError
from shared.tasks.tabular.spec import (
    TabularSpec,
    identifier_columns,
    infer_feature_options,
    label_counts,
    rare_label_values,
)


def test_label_counts_are_per_canonical_value_sorted_without_missing():
    assert label_counts(pd.Series([1.0, 0.0, 1.0, None, "1"])) == {"0": 1, "1": 3}


@pytest.mark.parametrize(
    ("counts", "rare"),
    [
        ({"no": 250, "unknown": 5, "yes": 300}, ["unknown"]),
        ({"no": 250, "unknown": 20, "yes": 300}, []),  # a small third class, not a stray code
        ({"no": 500, "yes": 5}, []),  # a binary label is imbalanced, never "rare"
        ({"a": 100, "b": 90, "c": 3, "d": 2}, ["c", "d"]),
    ],
)
def test_a_value_far_rarer_than_the_others_is_flagged(counts, rare):
    assert rare_label_values(counts) == rare


@pytest.mark.parametrize(
    ("scale", "says"),
    [
        ({"sex": [0, 1]}, "'data.scale.sex' must name a numeric column of data.features"),
        ({"bmi": [25, 5]}, "'data.scale.bmi' must name a numeric column of data.features"),
        ({"age": [60, 0]}, "'data.scale.age' must be [center, scale], two finite numbers with scale > 0, got [60, 0]"),
        ({"age": [60]}, "'data.scale.age' must be [center, scale]"),
        ({"age": [True, 10]}, "'data.scale.age' must be [center, scale]"),
        ({"age": "60,x"}, "'data.scale.age' must list numbers, got 'x'"),  # Flower's run config: a string
    ],
)
def test_a_study_scale_that_cannot_apply_is_refused_naming_the_column(scale, says):
    data = {"label": "y", "classes": [0, 1], "features": ["age", "sex"], "categorical": {"sex": ["m", "f"]}}
    with pytest.raises(ConfigError) as err:
        parse_section(TabularSpec, {**data, "scale": scale}, "data.")
    assert says in str(err.value)


def test_identifier_columns_are_unique_on_every_row_beyond_a_category_list_and_text_or_numbered_ids():
    n = 30
    frame = pd.DataFrame(
        {
            "Unnamed: 0": range(n),  # pandas' index, written by to_csv: once a feature
            "mrn": [f"MRN{i:04d}" for i in range(n)],  # an identifier
            "sex": ["F", "M"] * (n // 2),  # a category
            "age": range(n),  # unique, but a number not named as an id: a feature
            "PatientID": [float(1000 + 7 * i) for i in range(n)],  # whole numbers under an id's name: once a feature
            "lab_id": [i + 0.5 for i in range(n)],  # an id's name, but measured values: a feature
            "ward": [f"W{i % 25}" for i in range(n)],  # many values, some repeated: not an id (its error stands)
            "site": [f"S{i}" for i in range(n)],  # unique, but excluded (the site column)
        }
    )
    frame.loc[3, "mrn"] = None  # a missing id is still an id column
    frame.loc[4, "PatientID"] = None
    assert identifier_columns(frame, ["site"]) == ["Unnamed: 0", "mrn", "PatientID"]
    assert identifier_columns(frame.head(20), ["site"]) == []  # 20 rows: few enough to be categories


def test_a_numeric_column_with_a_stray_cell_is_located_not_taken_for_a_category_and_free_text_is_refused():
    ages = [str(40 + i) for i in range(30)]
    ages[2] = "sixty"
    table = pd.DataFrame({"age": ages, "note": [f"seen on day {i}" for i in range(30)]})
    with pytest.raises(DataError) as caught:
        infer_feature_options(table, ["note"])
    assert caught.value.column == "age" and caught.value.site is None and "sixty" not in str(caught.value)
    assert caught.value.problem.startswith("holds numbers but for 1 cell(s) that are not, first at data row 3")
    with pytest.raises(ConfigError, match="has 30 distinct values"):
        infer_feature_options(table, ["age"])
