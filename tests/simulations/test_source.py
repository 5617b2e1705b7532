"""A folder of one table per site is read as each site's own file: the same sites as one table with a site column,
errors naming the site's file and row, and folders that cannot be sites refused by name."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shared.config import SimulationConfig
from shared.errors import ConfigError, DataError
from shared.tasks.survival.demo import demo_study as survival_demo
from shared.tasks.tabular.demo import demo_study
from shared.tasks.text.demo import CLASSES, synthetic_notes
from simulations.cli import cli
from simulations.preflight import plan_study
from tests.shared.tasks.survival.tables import survival_table
from tests.simulations.test_preflight import hospital_table

SIZES = {"east": 30, "north": 60, "south": 50}


def write_folder(tmp_path, frame: pd.DataFrame, column: str = "hospital") -> tuple:
    """`frame`'s rows as one file per site in a folder (south's semicolon-separated), plus a README; the folder."""
    folder = tmp_path / "sites"
    folder.mkdir()
    for site, rows in frame.groupby(column):
        rows = rows.drop(columns=[column])
        if site == "south":
            rows.to_csv(folder / f"{site}.csv", index=False, sep=";", decimal=",")
        else:
            rows.to_csv(folder / f"{site}.csv", index=False)
    (folder / "README.md").write_text("where the exports came from\n")
    return folder


def plan(path, study=None, from_file: bool = False, site_column: str = "", hints=None):
    study = study or demo_study()
    source = SimulationConfig(data=str(path), site_column=site_column)
    return plan_study(dataclasses.replace(study, simulation=source), from_file, hints or {"label": "outcome"}, None)


def test_a_folder_of_site_tables_plans_the_sites_one_table_with_a_site_column_does(tmp_path):
    frame = hospital_table(SIZES)
    frame.loc[[0, 1], "age"] = np.nan  # two of east's rows
    table = tmp_path / "all.csv"
    frame.to_csv(table, index=False)
    folder = write_folder(tmp_path, frame)
    by_column, by_file = plan(table, site_column="hospital"), plan(folder)
    assert by_file.sites == by_column.sites and by_file.caveats == by_column.caveats
    assert by_file.study.data == by_column.study.data and by_file.n_sites == 3
    assert by_file.lines[:3] == [
        "sites: 3 site(s), one per file: east.csv, north.csv, south.csv",
        "sites: not read (not .csv, .tsv, .txt, .parquet, .pq): README.md",
        "south.csv: read as semicolon-separated, decimal separator ','",
    ]
    written = by_file.write(tmp_path / "run")
    for site in written:
        assert pd.read_csv(site.data_path).equals(pd.read_csv(tmp_path / "run" / "sites" / f"{site.name}.csv"))
    assert len(pd.read_csv(tmp_path / "run" / "sites" / "south.csv")) == SIZES["south"]


def test_a_bad_cell_names_the_sites_own_file_and_row(tmp_path):
    frame = hospital_table(SIZES)
    folder = write_folder(tmp_path, frame)
    study = plan(folder).study  # its features and categories, as a study file would list them
    north = pd.read_csv(folder / "north.csv").astype({"age": object})
    north.loc[4, "age"] = "sixty"
    north.to_csv(folder / "north.csv", index=False)
    with pytest.raises(DataError) as caught:
        plan(folder, study, from_file=True)
    assert (caught.value.site, caught.value.file, caught.value.column) == ("north", str(folder / "north.csv"), "age")
    assert "first at data row 5" in caught.value.problem
    with pytest.raises(DataError) as caught:
        plan(folder)  # without a study file the column's type is inferred: a stray word is located, not a category
    assert (caught.value.site, caught.value.column) == ("north", "age") and "sixty" not in str(caught.value)
    assert caught.value.problem.startswith("holds numbers but for 1 cell(s) that are not, first at data row 5")


def test_folders_that_cannot_be_sites_are_refused_by_name(tmp_path):
    folder = write_folder(tmp_path, hospital_table(SIZES))
    with pytest.raises(ConfigError, match="is a folder, whose sites are its files: drop --site-column"):
        plan(folder, site_column="hospital")
    (folder / "east.csv").unlink()
    pd.read_csv(folder / "north.csv").to_csv(folder / "north.tsv", index=False)
    with pytest.raises(DataError, match="two files are this site: north.csv and north.tsv"):
        plan(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is a folder with no .csv"):
        plan(empty)
    result = CliRunner().invoke(cli, ["--task", "multimodal", "--data", str(folder), "--label", "outcome", "--check"])
    assert result.exit_code == 2 and "a multimodal study reads one table" in result.output, result.output


def test_other_columns_are_named_with_the_file_that_has_them(tmp_path):
    folder = write_folder(tmp_path, hospital_table(SIZES))
    north = pd.read_csv(folder / "north.csv").drop(columns=["smoker"]).assign(bmi=25.0)
    north.to_csv(folder / "north.csv", index=False)
    with pytest.raises(DataError) as caught:
        plan(folder)
    assert caught.value.site == "north" and caught.value.file == str(folder / "north.csv")
    assert caught.value.problem == "its columns are not east.csv's: it lacks smoker and has bmi besides"


def test_a_folder_of_survival_tables_and_one_of_notes_are_sites(tmp_path):
    frames = {site: survival_table(80, seed=i) for i, site in enumerate(SIZES)}
    folder = tmp_path / "survival"
    folder.mkdir()
    for site, rows in frames.items():
        rows.to_csv(folder / f"{site}.csv", index=False)
    hints = {"time": "days", "event": "died"}
    survival = plan(folder, survival_demo(), hints=hints)
    assert survival.n_sites == 3 and {s: r["rows-read"] for s, r in survival.sites.items()} == dict.fromkeys(SIZES, 80)
    frames["south"].astype({"died": object}).assign(died=lambda t: t["died"].where(t.index != 2, "maybe")).to_csv(
        folder / "south.csv", index=False
    )
    with pytest.raises(DataError) as caught:
        plan(folder, survival_demo(), hints=hints)
    assert (caught.value.site, caught.value.column) == ("south", "died") and caught.value.problem.endswith("row 3")
    frames["south"].to_csv(folder / "south.csv", index=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    for i, site in enumerate(SIZES):
        synthetic_notes(100, seed=i).to_json(notes / f"{site}.jsonl", orient="records", lines=True)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--task", "text", "--data", str(notes), "--out", str(out), "--check"])
    assert result.exit_code == 0 and "checked: 3 sites, nothing trained" in result.output, result.output
    assert json.loads((out / "study.json").read_text())["data"]["classes"] == sorted(CLASSES)
    assert sorted(p.name for p in (out / "sites").glob("*.csv")) == [f"{site}.csv" for site in sorted(SIZES)]
