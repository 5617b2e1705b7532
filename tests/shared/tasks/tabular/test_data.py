"""Tabular loading: agreed encoding across sites, seeded splits, and clear errors for each bad input."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from shared.errors import ConfigError, DataError
from shared.partition import split_indices
from shared.tasks.tabular.data import load_tabular_site
from shared.tasks.tabular.spec import TabularSpec

SPEC = TabularSpec(
    label="disease",
    classes=[0, 1],
    features=["age", "chol", "cp"],
    categorical={"cp": [1, 2, 3, 4]},
    test_fraction=0.25,
)


def table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(30, 80, n),
            "chol": rng.normal(220, 30, n).round(1),
            "cp": rng.choice([1, 2, 3, 4], n),
            "disease": np.arange(n) % 2,
        }
    )


def write(tmp_path, frame: pd.DataFrame, name: str = "site.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_sites_share_one_feature_layout(tmp_path):
    a = table(40, seed=1)
    b = table(40, seed=2)
    b["cp"] = 2  # site b never saw categories 1, 3 or 4
    wa = load_tabular_site(write(tmp_path, a, "a.csv"), "a", SPEC, seed=0)
    wb = load_tabular_site(write(tmp_path, b, "b.csv"), "b", SPEC, seed=0)
    width = SPEC.n_inputs
    assert width == 2 + 4
    assert wa.train[0][0].shape == wb.train[0][0].shape == (width,)
    onehot = wb.train.tensors[0][:, 2:]
    assert (onehot[:, 1] == 1).all() and onehot.sum() == len(wb.train)


def test_split_is_seeded_stratified_and_site_standardised(tmp_path):
    path = write(tmp_path, table(40))
    first = load_tabular_site(path, "s", SPEC, seed=3)
    again = load_tabular_site(path, "s", SPEC, seed=3)
    assert (first.train.tensors[0] == again.train.tensors[0]).all()
    assert len(first.test) == 10 and first.test.tensors[1].sum() == 5  # stratified 50/50
    numeric = np.concatenate([first.train.tensors[0], first.val.tensors[0]])[:, :2]  # the whole train split
    assert np.allclose(numeric.mean(axis=0), 0, atol=1e-5) and np.allclose(numeric.std(axis=0), 1, atol=1e-4)
    assert first.report["class-counts"] == {"0": 20, "1": 20}


@pytest.mark.parametrize("standardize", [True, False])
def test_a_column_the_study_scales_is_encoded_the_same_at_every_site(tmp_path, standardize):
    spec = dataclasses.replace(SPEC, scale={"age": [60.0, 10.0]}, standardize=standardize)
    sites = [load_tabular_site(write(tmp_path, table(40, seed), f"{seed}.csv"), "s", spec, seed=0) for seed in (1, 2)]
    for site, seed in zip(sites, (1, 2), strict=True):
        ages = np.sort(np.concatenate([site.train.tensors[0], site.val.tensors[0], site.test.tensors[0]])[:, 0])
        assert np.allclose(ages, np.sort((table(40, seed)["age"].to_numpy() - 60.0) / 10.0), atol=1e-6)
    chol = np.concatenate([sites[0].train.tensors[0], sites[0].val.tensors[0]])[:, 1]  # the site's own, or as read
    assert np.isclose(chol.std(), 1, atol=1e-4) if standardize else chol.min() > 100


def test_a_study_scale_that_overflows_float32_is_refused_naming_the_column(tmp_path):
    spec = dataclasses.replace(SPEC, scale={"age": [0.0, 1e-300]})  # a hostile or mistyped study
    with pytest.raises(ConfigError) as err:
        load_tabular_site(write(tmp_path, table(40)), "s", spec, seed=0)
    assert err.value.field == "data.scale.age" and "beyond ±3.4e+38" in err.value.problem


def test_split_matches_flamby_convention():
    y = np.array([0] * 164 + [1] * 139)
    train, test = split_indices(y, 0.34, seed=43)
    assert (len(train), len(test)) == (199, 104)
    tiny = np.array([0] + [1] * 45)  # one healthy patient: no stratification possible
    train, test = split_indices(tiny, 0.34, seed=43)
    assert (len(train), len(test)) == (30, 16)


def test_missing_values_drop_or_impute(tmp_path):
    frame = table(40)
    frame.loc[[0, 1, 2], "chol"] = np.nan
    path = write(tmp_path, frame)
    assert load_tabular_site(path, "s", SPEC, seed=0).report["rows-used"] == 37
    imputed = load_tabular_site(path, "s", TabularSpec(**{**SPEC.__dict__, "missing": "impute"}), seed=0)
    assert imputed.report["rows-used"] == 40
    assert not imputed.train.tensors[0].isnan().any()


def expect(path, spec, *, column, match):
    with pytest.raises(DataError) as err:
        load_tabular_site(path, "hospital-x", spec, seed=0)
    message = str(err.value)
    assert "hospital-x" in message and path.name in message and match in message
    assert err.value.column == column
    return message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"site 'hospital-x', file '.*absent.csv': file not found"):
        load_tabular_site(tmp_path / "absent.csv", "hospital-x", SPEC, seed=0)


def test_missing_label_column(tmp_path):
    expect(write(tmp_path, table().drop(columns=["disease"])), SPEC, column="disease", match="column not found")


def test_label_not_binary_as_configured(tmp_path):
    frame = table()
    frame["disease"] = np.arange(40) % 3
    expect(write(tmp_path, frame), SPEC, column="disease", match="outside the study's binary classes")


def test_all_nan_column(tmp_path):
    frame = table()
    frame["chol"] = np.nan
    expect(write(tmp_path, frame), SPEC, column="chol", match="all missing")


def test_zero_rows_after_cleaning(tmp_path):
    frame = table()
    frame.loc[::2, "chol"] = np.nan
    frame.loc[1::2, "age"] = np.nan
    expect(write(tmp_path, frame), SPEC, column=None, match="no rows left")


def test_single_class(tmp_path):
    frame = table()
    frame["disease"] = 1
    expect(write(tmp_path, frame), SPEC, column="disease", match="only one class")


def test_non_numeric_value_names_row_not_value(tmp_path):
    frame = table().astype({"chol": object})
    frame.loc[6, "chol"] = "PATIENT-SECRET"
    message = expect(write(tmp_path, frame), SPEC, column="chol", match="non-numeric value")
    assert "data row 7" in message and "PATIENT-SECRET" not in message


def test_category_outside_agreed_list(tmp_path):
    frame = table()
    frame.loc[3, "cp"] = 9
    expect(write(tmp_path, frame), SPEC, column="cp", match="agreed categories")


def test_unreadable_file(tmp_path):
    path = tmp_path / "site.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot be read"):
        load_tabular_site(path, "hospital-x", SPEC, seed=0)


def test_parquet_reads_like_csv(tmp_path):
    frame = table()
    frame.to_parquet(tmp_path / "site.parquet")
    parquet = load_tabular_site(tmp_path / "site.parquet", "s", SPEC, seed=0)
    csv = load_tabular_site(write(tmp_path, frame), "s", SPEC, seed=0)
    assert np.allclose(parquet.train.tensors[0], csv.train.tensors[0])


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e309", "1e308", "-3.5e38"])
def test_infinite_or_float32_overflowing_value_names_column_and_first_row(tmp_path, value):
    frame = table().astype({"chol": object})
    frame.loc[[11, 30], "chol"] = value
    path = write(tmp_path, frame)
    with pytest.raises(DataError) as err:
        load_tabular_site(path, "hospital-2", SPEC, seed=0)
    assert str(err.value) == (
        f"site 'hospital-2', file '{path}', column 'chol': 2 infinite or out-of-range value(s) (beyond ±3.4e+38, "
        "float32's range) in a numeric column, first at data row 12"
    )


@pytest.mark.parametrize("value", ["1_000", "١٢", "0x10"])
def test_what_python_alone_would_read_as_a_number_stays_non_numeric(tmp_path, value):
    """The overflow fallback (pandas 2 reads "1e309" as NaN) takes plain decimal numbers only."""
    frame = table().astype({"chol": object})
    frame.loc[4, "chol"] = value
    with pytest.raises(DataError, match="column 'chol': 1 non-numeric value.*first at data row 5"):
        load_tabular_site(write(tmp_path, frame), "hospital-2", SPEC, seed=0)


def test_values_at_float32s_edge_still_train_finite(tmp_path):
    frame = table()
    frame.loc[5, "chol"] = 3.0e38
    data = load_tabular_site(write(tmp_path, frame), "hospital-2", SPEC, seed=0)
    assert all(np.isfinite(split.tensors[0].numpy()).all() for split in (data.train, data.test))


@pytest.mark.parametrize(
    ("rows", "labels", "options", "problem"),
    [
        (19, None, {}, "fewer usable rows than data.min-rows = 20; too few to train on"),
        (40, [0] * 38 + [1] * 2, {"test_fraction": 0.5}, None),  # 1 training row of class 1 at most
        (30, None, {"min_rows": 31}, "fewer usable rows than data.min-rows = 31; too few to train on"),
        (40, [0] * 36 + [1] * 4, {"min_per_class": 4}, None),
    ],
)
def test_a_site_below_the_minimum_size_is_refused_by_name(tmp_path, rows, labels, options, problem):
    frame = table(rows)
    if labels is not None:
        frame["disease"] = labels
    path = write(tmp_path, frame)
    spec = dataclasses.replace(SPEC, **options)
    problem = problem or (
        f"class(es) ['1'] have fewer training rows than data.min-per-class = {spec.min_per_class}; a site needs two "
        "classes that reach it"
    )
    with pytest.raises(DataError) as err:
        load_tabular_site(path, "hospital-3", spec, seed=0)
    assert str(err.value) == f"site 'hospital-3', file '{path}': {problem}"


def test_a_single_class_site_trains_where_the_study_sets_min_per_class_to_0(tmp_path):
    """FLamby's Switzerland: its one healthy patient is in the test split, so its train split holds one class."""
    frame = table(40).assign(disease=[0] + [1] * 39, fold=["test"] * 10 + ["train"] * 30)
    spec = dataclasses.replace(SPEC, split_column="fold")
    with pytest.raises(DataError, match=r"class\(es\) \['0'\] have fewer training rows than data.min-per-class = 2"):
        load_tabular_site(write(tmp_path, frame), "switzerland", spec, seed=0)
    data = load_tabular_site(write(tmp_path, frame), "switzerland", dataclasses.replace(spec, min_per_class=0), seed=0)
    assert len(data.train) == 30 and len(data.test) == 10


def test_a_site_at_the_minimum_size_trains(tmp_path):
    data = load_tabular_site(write(tmp_path, table(20)), "hospital-3", SPEC, seed=0)
    assert len(data.train) + len(data.test) == 20


def test_dropped_rows_are_counted_and_said_with_the_remedy(tmp_path):
    frame = table(50).astype({"disease": object})
    frame.loc[[0, 1, 2], "chol"] = np.nan
    frame.loc[3, "age"] = np.nan
    frame.loc[4, "disease"] = np.nan
    report = load_tabular_site(write(tmp_path, frame), "s", SPEC, seed=0).report
    assert report["rows-dropped"] == {"no label": 1, 'a missing feature value (data.missing = "drop")': 4}
    assert report["notes"] == [
        "1 of 50 rows (2%) dropped: no label",
        '4 of 50 rows (8%) dropped: a missing feature value (data.missing = "drop"), most in chol (3), age (1); '
        'data.missing = "impute" keeps them',
    ]


HINT = '; rows missing a feature value were dropped (data.missing = "drop"), and data.missing = "impute" keeps them'


@pytest.mark.parametrize(
    ("missing", "problem"),
    [  # Fed-Heart-Disease's Hungarian hospital: almost every row lacks `ca`, and the rows that have it are healthy
        (range(4, 50), "column 'disease': only one class left after cleaning; a site needs rows of two classes"),
        (range(35), "fewer usable rows than data.min-rows = 20; too few to train on"),
        (range(0, 50, 2), "no rows left after cleaning"),  # and age is missing from every other row
    ],
)
def test_a_site_left_too_little_by_dropped_rows_is_told_that_imputing_keeps_them(tmp_path, missing, problem):
    frame = table(50)
    frame["disease"] = [0] * 4 + [0, 1] * 23
    frame.loc[list(missing), "chol"] = np.nan
    if problem.startswith("no rows"):
        frame.loc[list(range(1, 50, 2)), "age"] = np.nan
    path = write(tmp_path, frame)
    with pytest.raises(DataError) as err:
        load_tabular_site(path, "hungarian", SPEC, seed=0)
    assert str(err.value).endswith(problem + HINT), str(err.value)
    assert not re.search(r"\d+ rows|\(\d+\)", str(err.value))  # no count: a refusal is sent to the server
    load_tabular_site(path, "hungarian", dataclasses.replace(SPEC, missing="impute"), seed=0)


def test_a_site_too_small_with_nothing_dropped_gets_no_hint(tmp_path):
    with pytest.raises(DataError) as err:
        load_tabular_site(write(tmp_path, table(19)), "hospital-3", SPEC, seed=0)
    assert "impute" not in str(err.value)


@pytest.mark.parametrize(
    ("rows", "labels", "caveat"),
    [
        (20, None, "held-out split of 5 rows (under 10)"),
        (60, [1, 1] + [0] * 58, "held-out split of a single class"),  # 2 of class 1: not stratified, both train
        (60, None, None),
    ],
)
def test_a_held_out_split_too_small_to_score_is_flagged(tmp_path, rows, labels, caveat):
    frame = table(rows)
    if labels is not None:
        frame["disease"] = labels
    spec = dataclasses.replace(SPEC, test_fraction=0.25, min_per_class=1)
    report = load_tabular_site(write(tmp_path, frame), "s", spec, seed=0).report
    assert report.get("held-out-caveat") == caveat
    assert (f"{caveat}: its metrics are unreliable" in report["notes"]) == (caveat is not None)
