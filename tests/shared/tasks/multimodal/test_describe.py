"""A multimodal table described before any study: each modality's rows and what would stop training, small counts
only as a bound; its schema names the image, note, id and omics columns by role, never their values."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.errors import ConfigError
from shared.tasks import get_task
from shared.tasks.multimodal.describe import agreed_multimodal_data, describe_modalities
from tests.shared.tasks.multimodal.patients import OMICS, write_matrix, write_matrix_site, write_site

ROLES = {"image-column": "image", "note-column": "note", "omics": OMICS}


def describe(path, hints, min_cell=5):
    return describe_modalities(pd.read_csv(path), path, "north", hints, min_cell)


def test_each_modality_gets_its_rows_and_problems_small_counts_as_a_bound(tmp_path):
    path, table = write_site(tmp_path)
    table.loc[[4, 6, 8, 12, 16, 20], "image"] = "images/gone.png"
    table.loc[10, "image"] = "../p0.png"
    table.loc[[2, 6, 10], "note"] = "a note after all"  # 7 of 40 without a note
    table.to_csv(path, index=False)
    assert describe(path, ROLES, min_cell=5) == {
        "image": "column 'image': 30 of 40 rows (75%) name an image; 6 path(s) do not exist, first at data row 5; "
        "fewer than 5 path(s) point outside the site's data folder, first at data row 11",
        "note": "column 'note': text, 33 of 40 rows (82%) have a note",
        "omics": "all 3 column(s) in the table; 30 of 40 rows (75%) have omics values",
    }
    assert (
        describe(path, ROLES, min_cell=8)["note"] == "column 'note': text, all but fewer than 8 of 40 rows have a note"
    )
    assert describe(path, ROLES, min_cell=8)["image"].split("; ")[1] == (
        "fewer than 8 path(s) do not exist, first at data row 5"
    )


def test_absent_columns_and_a_note_column_of_numbers_are_said_without_failing(tmp_path):
    path, table = write_site(tmp_path)
    table.drop(columns=["image", *OMICS]).assign(note=range(len(table))).to_csv(path, index=False)
    assert describe(path, ROLES) == {
        "image": "column 'image' not found: no patient has an image here",
        "note": "column 'note': not text, 40 value(s) hold numbers or other values, first at data row 1",
        "omics": "none of the 3 omics column(s) in the table: no patient has omics here",
    }
    with pytest.raises(ConfigError, match="'min-cell' must be at least 1"):
        describe(path, ROLES, min_cell=0)


def test_a_matrix_file_is_described_with_its_columns_and_its_problems_as_training_would_name_them(tmp_path):
    path, _, matrix = write_matrix_site(tmp_path)
    hints = {"omics-file": "omics.csv", "id-column": "pid"}
    assert describe(path, hints) == {
        "omics": "all 3 column(s) in 'omics.csv', keyed by 'pid'; 30 of 40 rows (75%) have omics values"
    }
    write_matrix(tmp_path / "omics.csv", pd.concat([matrix, matrix.head(1)]))
    assert describe(path, {**hints, "omics": ["g1", "g2"]})["omics"] == (
        f"site 'north', file '{tmp_path / 'omics.csv'}', column 'pid': patient ids repeat (the file holds one row per "
        "patient): data row 31 has the id of data row 1"
    )
    assert describe(path, {**hints, "omics": ["g1", "g9"]})["omics"].endswith(
        "lacks 1 of the study's 2 omics columns (data.omics): g9; every site needs the same list"
    )
    with pytest.raises(ConfigError, match="'data.id-column' must name the patient id column"):
        describe(path, {"omics-file": "omics.csv"})


def test_the_schema_names_role_columns_by_type_only_and_infer_data_keeps_ids_out_of_the_features(tmp_path):
    path, table, _ = write_matrix_site(tmp_path)
    table["note"] = "same templated note"  # a value seen 40 times would be a category of a plain table's schema
    table.to_csv(path, index=False)
    hints = {
        "label": "y",
        "image-column": "image",
        "note-column": "note",
        "omics-file": "omics.csv",
        "id-column": "pid",
    }
    schema = get_task("multimodal").schema(path, "north", hints, 5)
    assert schema["task"] == "multimodal" and schema["label"] == "y"
    assert schema["columns"] == {
        "age": {"type": "numeric"},
        "crp": {"type": "numeric"},
        "y": {"type": "categorical", "categories": ["no", "yes"], "rare-left-out": False},
        "image": {"type": "image"},
        "note": {"type": "note"},
        "pid": {"type": "id"},
    }
    assert schema["omics-file"] == {"file": "omics.csv", "id-column": "pid", "columns": OMICS}
    inferred = get_task("multimodal").infer_data(path, "north", hints)
    assert inferred["features"] == ["age", "crp"] and inferred["omics"] == OMICS


def site_schema(folder, name: str, drop: list[str], rename: dict[str, str] | None = None, **hints):
    """A site's schema, its table holding every modality but the columns in `drop` (and some renamed)."""
    folder.mkdir()
    path, table = write_site(folder)
    table.drop(columns=drop).rename(columns=rename or {}).to_csv(path, index=False)
    given = {"label": "y", "image-column": "image", "note-column": "note", "omics": OMICS, **hints}
    return get_task("multimodal").schema(path, name, given, 5)


def test_sites_holding_different_modalities_agree_on_a_study_and_disagreeing_ones_are_named(tmp_path):
    north = site_schema(tmp_path / "north", "north", ["note", *OMICS])  # images and the record
    south = site_schema(tmp_path / "south", "south", ["image"])  # notes, omics and the record
    data = agreed_multimodal_data({"north.json": north, "south.json": south})
    assert data["features"] == ["age", "crp"] and data["classes"] == ["no", "yes"]
    assert (data["image-column"], data["note-column"], data["omics"]) == ("image", "note", OMICS)
    scan = site_schema(tmp_path / "east", "east", ["note", *OMICS], {"image": "scan"}, **{"image-column": "scan"})
    with pytest.raises(ConfigError, match="'data.image-column' differs between sites: 'image' at site.*'scan' at"):
        agreed_multimodal_data({"north.json": north, "east.json": scan})
    fewer = site_schema(tmp_path / "west", "west", ["g3"], omics=OMICS[:2])
    with pytest.raises(ConfigError, match="'data.omics' differ between the sites that hold omics \\(south, west\\)"):
        agreed_multimodal_data({"south.json": south, "west.json": fewer})
