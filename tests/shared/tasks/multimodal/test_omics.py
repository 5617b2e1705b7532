"""Omics from a matrix file beside the table, keyed by patient id: loaded exactly as the same values in the table,
patients absent from it lacking omics, and every bad input named by site, file, column and row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import ConfigError, DataError
from shared.tasks import get_task
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.spec import MODALITIES, data_spec
from tests.shared.tasks.multimodal.patients import (
    matrix_study,
    tiny_study,
    write_matrix,
    write_matrix_site,
    write_site,
)

TASK = get_task("multimodal")


@pytest.mark.parametrize("name", ["omics.csv", "omics.parquet"])
def test_a_matrix_file_loads_exactly_as_the_same_values_in_the_table(tmp_path, name):
    in_table = TASK.load_site(write_site(tmp_path / "table")[0], "west", tiny_study())
    path, _, matrix = write_matrix_site(tmp_path / "matrix", name=name)
    assert len(matrix) == 30  # every fourth patient has no omics value: no row in the matrix
    from_file = TASK.load_site(path, "west", matrix_study(**{"omics-file": name}))
    splits = [(a.tensors, b.tensors) for a, b in ((in_table.train, from_file.train), (in_table.test, from_file.test))]
    assert all(torch.equal(x, y) for a, b in splits for x, y in zip(a, b, strict=True))
    assert from_file.kept == in_table.kept and set(from_file.kept) == {"record", "omics"}
    assert from_file.report["coverage"]["omics"] == 0.75


def test_a_patient_absent_from_the_matrix_lacks_omics_and_numeric_ids_match_text_ones(tmp_path):
    path, table, matrix = write_matrix_site(tmp_path)
    table["pid"] = range(len(table))  # numbers in the table ...
    table.to_csv(path, index=False)
    matrix["pid"] = [f"{int(p[1:])}.0" for p in matrix["pid"]]  # ... written 7.0 in the matrix
    write_matrix(tmp_path / "omics.csv", matrix.iloc[5:])  # 5 patients' rows gone
    data = TASK.load_site(path, "west", matrix_study())
    rows = torch.cat([part.tensors[0] for part in (data.train, data.val, data.test)])
    has = Layout.of(data_spec(matrix_study())).mask(rows)[:, MODALITIES.index("omics")]
    assert int(has.sum()) == 25


def refuse(path, study=None) -> str:
    with pytest.raises(DataError) as raised:
        TASK.load_site(path, "west", study or matrix_study())
    return str(raised.value)


def test_a_site_without_the_matrix_file_holds_no_omics_and_one_outside_its_folder_is_refused(tmp_path):
    site = tmp_path / "site"
    path, _, _ = write_matrix_site(site)
    (site / "omics.csv").unlink()
    data = TASK.load_site(path, "west", matrix_study())
    assert data.report["coverage"]["omics"] == 0.0 and "omics" not in data.kept
    required = matrix_study(required=["omics"])
    assert "omics" in refuse(path, required) and "required" in refuse(path, required)
    write_matrix(tmp_path / "elsewhere.csv", write_matrix_site(tmp_path / "other")[2])
    (site / "omics.csv").symlink_to(tmp_path / "elsewhere.csv")  # a link out of the folder is out too
    assert refuse(path) == (
        f"site 'west', file '{path}': data.omics-file 'omics.csv' would point outside the site's data folder"
    )


@pytest.mark.parametrize("omics_file", ["../omics.csv", "/etc/omics.csv", "a/../../omics.csv", "."])
def test_a_study_naming_an_omics_file_outside_the_sites_folder_is_refused(omics_file):
    with pytest.raises(ConfigError, match="must name a file relative to each site's table folder") as raised:
        TASK.check_study(matrix_study(**{"omics-file": omics_file}))
    assert raised.value.field == "data.omics-file"


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"id-column": ""}, "data.id-column", "must name the patient id column that keys both the table and"),
        ({"omics": []}, "data.omics", "must list the columns to read from omics-file"),
        ({"omics-file": ""}, "data.id-column", "keys the table to data.omics-file, which is not set"),
        ({"id-column": "age"}, "data", "column 'age' is given two roles"),
    ],
)
def test_omics_file_settings_are_checked_with_the_study(data, field, problem):
    with pytest.raises(ConfigError) as raised:
        TASK.check_study(matrix_study(**data))
    assert (raised.value.field, problem in raised.value.problem) == (field, True)


def test_a_matrix_without_the_id_column_or_a_table_without_it_is_refused(tmp_path):
    path, table, matrix = write_matrix_site(tmp_path)
    write_matrix(tmp_path / "omics.csv", matrix.rename(columns={"pid": "patient"}))
    assert refuse(path) == (
        f"site 'west', file '{tmp_path / 'omics.csv'}', column 'pid': id column not found (data.id-column; the "
        "file's columns: patient, g1, g2, g3)"
    )
    write_matrix(tmp_path / "omics.csv", matrix)
    table.drop(columns="pid").to_csv(path, index=False)
    assert refuse(path).startswith(
        f"site 'west', file '{path}', column 'pid': id column not found (data.id-column keys the table to "
        "data.omics-file; the file's columns: age, crp"
    )


def test_repeated_and_missing_patient_ids_are_named_by_row_never_by_value(tmp_path):
    path, _, matrix = write_matrix_site(tmp_path)
    repeated = matrix.copy()
    repeated.iloc[4, 0] = repeated.iloc[1, 0]
    write_matrix(tmp_path / "omics.csv", repeated)
    message = refuse(path)
    assert message == (
        f"site 'west', file '{tmp_path / 'omics.csv'}', column 'pid': patient ids repeat (the file holds one row per "
        "patient): data row 5 has the id of data row 2"
    )
    assert repeated.iloc[1, 0] not in message
    blank = matrix.copy()
    blank.iloc[[3, 6], 0] = None
    write_matrix(tmp_path / "omics.csv", blank)
    assert refuse(path).endswith("column 'pid': 2 row(s) have no patient id, first at data row 4")


def test_matrix_columns_differing_from_the_studys_list_are_named(tmp_path):
    path, _, matrix = write_matrix_site(tmp_path)
    write_matrix(tmp_path / "omics.csv", matrix.drop(columns=["g1", "g3"]).assign(extra=1.0))
    assert refuse(path) == (
        f"site 'west', file '{tmp_path / 'omics.csv'}': lacks 2 of the study's 3 omics columns (data.omics): g1, g3; "
        "every site needs the same list"
    )


def test_non_numeric_and_out_of_range_matrix_cells_are_refused_with_their_row(tmp_path):
    path, _, matrix = write_matrix_site(tmp_path)
    bad = matrix.astype({"g2": object})
    bad.iloc[3, bad.columns.get_loc("g2")] = "high"
    write_matrix(tmp_path / "omics.csv", bad)
    assert refuse(path) == (
        f"site 'west', file '{tmp_path / 'omics.csv'}', column 'g2': 1 non-numeric value(s) in a numeric column, "
        "first at data row 4"
    )
    huge = matrix.copy()
    huge.iloc[6, huge.columns.get_loc("g3")] = 1e300
    write_matrix(tmp_path / "omics.csv", huge)
    assert refuse(path).endswith(
        "column 'g3': 1 infinite or out-of-range value(s) (beyond ±3.4e+38, float32's range) "
        "in a numeric column, first at data row 7"
    )


def test_a_table_holding_the_omics_columns_as_well_as_a_matrix_file_is_refused(tmp_path):
    path, table, matrix = write_matrix_site(tmp_path)
    table.assign(g2=np.arange(len(table)) * 0.5).to_csv(path, index=False)
    assert refuse(path) == (
        f"site 'west', file '{path}', column 'g2': holds 1 of the omics columns the study reads from data.omics-file "
        "'omics.csv': a study takes omics from the table or from the file, not both; remove them from the table"
    )
