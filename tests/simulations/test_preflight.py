"""medfed-sim's pre-flight: the user's table read as meant, described, and each site's rows checked as the site will."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shared.config import SimulationConfig
from shared.errors import DataError
from shared.tasks import get_task
from shared.tasks.schedule import default_schedule
from shared.tasks.tabular.demo import demo_study
from simulations.preflight import plan_study
from tests.shared.tasks.multimodal.patients import matrix_study, write_matrix_site
from tests.shared.tasks.multimodal.patients import write_site as write_patients


def hospital_table(sizes: dict[str, int]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = sum(sizes.values())
    return pd.DataFrame(
        {
            "hospital": np.repeat(list(sizes), list(sizes.values())),
            "age": rng.normal(60, 10, n).round(1),
            "smoker": rng.choice(["no", "yes"], n),
            "outcome": np.resize(["no", "yes"], n),
        }
    )


def test_a_semicolon_export_is_read_described_and_checked_per_site(tmp_path):
    frame = hospital_table({"north": 60, "south": 50, "east": 30})
    frame.loc[[0, 1, 2], "age"] = np.nan  # three of north's rows
    path = tmp_path / "export.csv"
    text = frame.to_csv(index=False, sep=";", decimal=",")
    path.write_text("".join(f"{line};\n" for line in text.splitlines()))  # a trailing ';' on every line
    source = SimulationConfig(data=str(path), site_column="hospital")
    plan = plan_study(dataclasses.replace(demo_study(), simulation=source), False, {"label": "outcome"}, None)
    assert plan.lines == [
        "export.csv: read as semicolon-separated, decimal separator ','",
        "export.csv: dropped 1 empty column(s) with no header name (a trailing delimiter on every line?)",
        "label 'outcome': 2 classes: no (70 rows), yes (70 rows); positive class: yes",
        "site 'east': held-out split of 6 rows (under 10): its metrics are unreliable",
        "site 'north': 3 of 60 rows (5%) dropped: a missing feature value (data.missing = \"drop\"), most in age (3); "
        'data.missing = "impute" keeps them',
        "defaults for tabular sites of about 47 rows each: FedAvg, 10 rounds x 2 local epochs, lr 0.01, batch 8 "
        "(README: Defaults)",
    ]
    assert plan.caveats == {"east": "held-out split of 6 rows (under 10)"}
    assert plan.sites["north"] == {
        "rows-read": 60,
        "rows-used": 57,
        "rows-dropped": {'a missing feature value (data.missing = "drop")': 3},
        "train-rows": 36,
        "validation-rows": 9,
        "test-rows": 12,
    }
    assert plan.study.name == "export" and plan.study.data["features"] == ["age", "smoker"]
    assert plan.n_sites == 3 and not (tmp_path / "run").exists()
    written = plan.write(tmp_path / "run")
    assert [s.name for s in written] == ["east", "north", "south"]
    assert (tmp_path / "run" / "sites" / "east.csv").read_text().startswith("age;smoker;outcome\n")


def test_a_multimodal_table_is_split_with_each_sites_images_and_a_path_out_of_its_folder_refused(tmp_path):
    source = tmp_path / "data"
    path, table = write_patients(source, n=60)
    table["hospital"] = np.resize(["north", "north", "south", "south"], len(table))
    table.to_csv(path, index=False)
    source = SimulationConfig(data=str(path), site_column="hospital")
    study = dataclasses.replace(get_task("multimodal").demo_study(), simulation=source)
    hints = {"label": "y", "image-column": "image", "note-column": "note", "omics": ["g1", "g2", "g3"]}
    plan = plan_study(study, False, hints, None)
    assert plan.study.data["features"] == ["age", "crp"] and "modalities: record, image, note, omics" in plan.lines
    sites = plan.write(tmp_path / "run")
    for site in sites:  # each hospital holds its own rows and exactly the images they name
        rows = pd.read_csv(site.data_path)
        named = {str(c) for c in rows["image"].dropna()}
        held = {str(p.relative_to(site.data_path.parent)) for p in site.data_path.parent.rglob("*.png")}
        assert named == held and len(named) > 10
        assert get_task("multimodal").load_site(site.data_path, site.name, plan.study).report["coverage"]["image"] > 0
    table.loc[7, "image"] = "../../etc/passwd"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'image'.*outside the site's data folder.*data row\(s\) 8"):
        plan_study(study, False, hints, None)


def test_a_multimodal_studys_omics_file_is_copied_to_each_site_and_one_outside_the_folder_refused(tmp_path):
    path, table, _ = write_matrix_site(tmp_path / "data", n=60)
    table["hospital"] = np.where(table.index < 30, "north", "south")
    table.to_csv(path, index=False)
    source = SimulationConfig(data=str(path), site_column="hospital")
    plan = plan_study(dataclasses.replace(matrix_study(), simulation=source), True, {}, None)
    for site in plan.write(tmp_path / "run"):
        assert (site.data_path.parent / "omics.csv").read_bytes() == (tmp_path / "data" / "omics.csv").read_bytes()
        data = get_task("multimodal").load_site(site.data_path, site.name, plan.study)
        in_matrix = pd.read_csv(site.data_path)["pid"].str[1:].astype(int) % 4 != 3  # patients.py: who has omics
        assert data.report["coverage"]["omics"] == round(in_matrix.mean(), 4)
    (tmp_path / "data" / "omics.csv").rename(tmp_path / "omics.csv")
    (tmp_path / "data" / "omics.csv").symlink_to(tmp_path / "omics.csv")
    with pytest.raises(DataError, match="data.omics-file 'omics.csv' would point outside the site's data folder"):
        plan_study(dataclasses.replace(matrix_study(), simulation=source), True, {}, None)


def test_a_users_image_set_gets_its_tasks_default_schedule_for_its_size(tmp_path):
    path = tmp_path / "scans.npz"
    np.savez(path, train_images=np.zeros((90, 8, 8), np.uint8), train_labels=np.resize([0, 1], (90, 1)))
    study = get_task("imaging").demo_study()
    plan = plan_study(dataclasses.replace(study, simulation=SimulationConfig(data=str(path))), False, {}, None)
    assert plan.rows_per_site == 30 and plan.lines[-1].startswith("defaults for imaging sites of about 30 images each")
    assert (plan.study.federation.rounds, plan.study.train.local_epochs, plan.study.train.lr) == (20, 5, 0.003)
    assert (default_schedule("imaging", 1700).rounds, default_schedule("imaging", None).rounds) == (10, 20)
    from_file = plan_study(dataclasses.replace(study, simulation=SimulationConfig(data=str(path))), True, {}, None)
    assert from_file.study.federation.rounds == study.federation.rounds  # a study file's schedule is kept


def test_a_folder_of_image_sites_npz_or_sub_folders_is_read_site_by_site(tmp_path):
    """A folder already split (README): it was read as one site's image folder and refused for lacking labels.csv."""
    npz, folders = tmp_path / "npz", tmp_path / "folders"
    npz.mkdir()
    for site, labels, size in (("north", [0, 1], 8), ("south", [1, 2], 12)):
        rgb = np.zeros((40, size, size, 3) if site == "south" else (40, size, size), np.uint8)
        np.savez(npz / f"{site}.npz", train_images=rgb, train_labels=np.resize(labels, (40, 1)))
        site_folder = folders / site
        site_folder.mkdir(parents=True)
        names = [f"{i}.png" for i in range(12)]
        for i, file in enumerate(names):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(site_folder / file)
        classes = [f"class-{v}" for v in labels]
        index = pd.DataFrame({"file": names, "label": np.resize(classes, 12)})
        index.to_csv(site_folder / "labels.csv", index=False)
    study = get_task("imaging").demo_study()
    plan = plan_study(dataclasses.replace(study, simulation=SimulationConfig(data=str(npz))), False, {}, None)
    assert plan.n_sites == 2 and plan.study.data["classes"] == [0, 1, 2]  # south holds the class north lacks
    assert (plan.study.data["image-size"], plan.study.data["channels"]) == (12, 3)  # no site's images lose detail
    assert [site.name for site in plan.write(tmp_path / "run")] == ["north", "south"]
    plan = plan_study(dataclasses.replace(study, simulation=SimulationConfig(data=str(folders))), False, {}, None)
    assert plan.n_sites == 2 and plan.study.data["classes"] == ["class-0", "class-1", "class-2"]
    given = dataclasses.replace(study, simulation=SimulationConfig(data=str(folders)))
    assert plan_study(given, True, {}, None).study.data == study.data  # a study file's own data wins


@pytest.mark.parametrize("name", ["Cleveland/Ohio", "..", "a\\b"])
def test_a_site_name_that_cannot_be_a_file_name_is_refused_by_its_rows_not_written_outside(tmp_path, name):
    frame = hospital_table({"north": 40, "south": 40})
    frame.loc[40:, "hospital"] = name
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    source = SimulationConfig(data=str(path), site_column="hospital")
    with pytest.raises(DataError) as caught:
        plan_study(dataclasses.replace(demo_study(), simulation=source), False, {"label": "outcome"}, None)
    assert (caught.value.file, caught.value.column) == (str(path), "hospital")
    assert caught.value.problem.startswith(f"site '{name}' (data row(s) 41, 42, 43,")
    assert "cannot name the site's file" in caught.value.problem
