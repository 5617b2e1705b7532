"""`medfed-sim` on a user's CSV with a site column or image set: federated, pooled and local results side by side."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import ray
from safetensors.torch import save_file
from typer.testing import CliRunner

import simulations.runner
from server.cli import cli as server_cli
from shared.arrays import read_model_file
from shared.config import StudyConfig
from shared.errors import DataError
from shared.initial import weights_sha256
from shared.tasks import build_model, get_task
from shared.tasks.imaging.demo import synthetic_images
from shared.tasks.tabular.demo import breast_cancer_table
from shared.tasks.text.demo import CLASSES, synthetic_notes
from simulations.cli import cli

MEASURED = ("compute-s", "peak-rss-mb")  # what a rerun measures anew; every other figure is the same


def test_help_and_a_mistyped_option_load_no_torch():
    """torch, scikit-learn, matplotlib, Ray and the tasks load once a study is read: --help answers in a second."""
    heavy = "{'torch', 'sklearn', 'matplotlib', 'ray', 'shared.tasks'}"
    code = f"import sys, simulations.cli; print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_data_run_writes_a_study_that_validates_and_reruns_the_same_study(tmp_path):
    table = breast_cancer_table().iloc[:, [0, 1, 2, 3, -1]]
    table.insert(0, "hospital", ["north", "south", "east"] * (len(table) // 3) + ["north"] * (len(table) % 3))
    table.insert(1, "ward", ["A", "B"] * (len(table) // 2) + ["A"] * (len(table) % 2))
    path = tmp_path / "patients.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["--data", str(path), "--label", "diagnosis", "--site-column", "hospital", "--rounds", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "label 'diagnosis': 2 classes: benign (357 rows), malignant (212 rows); positive class: malignant" in (
        result.output
    )
    assert "round   1/1" in result.output and "mean over sites" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {
        "federated",
        "pooled",
        "local",
        "privacy",
        "timing",
        "unreliable",
        "preflight",
        "single-class",
    }
    assert all(0 <= summary["privacy"][site]["mia-auc"] <= 1 for site in ("east", "north", "south"))
    assert set(summary["federated"]["per_site"]) == {"east", "north", "south"} and summary["unreliable"] == {}
    assert summary["preflight"]["north"]["rows-read"] == 191
    study = json.loads((out / "study.json").read_text())
    assert study["data"]["categorical"] == {"ward": ["A", "B"]}
    assert "hospital" not in study["data"]["features"]
    assert study["simulation"] | {"data": str(path), "site-column": "hospital", "sites": 3} == study["simulation"]
    assert sorted(p.name for p in (out / "sites").iterdir()) == ["east.csv", "north.csv", "south.csv"]
    assert all("hospital" not in pd.read_csv(p).columns for p in (out / "sites").iterdir())
    valid = CliRunner().invoke(server_cli, ["validate", str(out / "study.json")])
    assert valid.exit_code == 0 and "secure aggregation on in a federation" in valid.output, valid.output
    again = tmp_path / "again"
    rerun = CliRunner().invoke(cli, ["--study", str(out / "study.json"), "--no-baselines", "--out", str(again)])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((again / "study.json").read_text()) == study
    figures = [
        {site: {k: v for k, v in m.items() if k not in MEASURED} for site, m in s["federated"]["per_site"].items()}
        for s in (summary, json.loads((again / "summary.json").read_text()))
    ]
    assert figures[0] == figures[1] and figures[0]["north"]["accuracy"] > 0.5


def csv_text(frame: pd.DataFrame, **options) -> str:
    return frame.to_csv(index=False, **options)


def hospitals(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "hospital": np.resize(["north", "south", "east"], n),
            "age": rng.normal(60, 10, n).round(1),
            "outcome": np.resize(["no", "yes"], n),
        }
    )


def with_unknown(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[7, "outcome"] = "unknown"
    return frame


def without_site(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[[4, 9], "hospital"] = None
    return frame


def trailing_comma_on_data_rows(text: str) -> str:
    header, *rows = text.splitlines()
    return "".join([f"{header}\n", *(f"{row},\n" for row in rows)])


@pytest.mark.parametrize(
    ("text", "args", "problem"),
    [
        (
            trailing_comma_on_data_rows(csv_text(hospitals())),
            [],
            "file '{path}': 60 data row(s) have more fields than the header's 3, so their values would shift columns: "
            "data row(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 50 more; remove the trailing comma at the end of those rows",
        ),
        (
            csv_text(without_site(hospitals())),
            [],
            "file '{path}', column 'hospital': 2 row(s) name no site: data row(s) 5, 10; fill in their site, or "
            "remove them",
        ),
        (
            csv_text(hospitals()),
            ["--site-column", "site"],
            "file '{path}', column 'site': column not found (--site-column; the file's columns: hospital, age, "
            "outcome)",
        ),
        (
            csv_text(hospitals(), sep=";"),
            ["--delimiter", ","],
            "file '{path}', column 'outcome': column not found (--label; the file's columns: hospital;age;outcome; "
            "the header reads as one column: is the file semicolon-separated? (--delimiter))",
        ),
        (
            csv_text(with_unknown(hospitals())),
            [],
            "file '{path}', column 'outcome': 'unknown' (1 rows) is far rarer than the other values (no (30), yes "
            "(29)): more likely a code than a class. Map those rows to a class or remove them, or make the value "
            "mean missing with --na-values '?,unknown' (those rows are then dropped and counted); to keep it as a "
            "class, list data.classes in a study file",
        ),
        (
            csv_text(hospitals().query("hospital != 'east'")),
            [],
            "medfed-sim: 'federation.min-sites' is 3, more than the 2 site(s) of this simulation; pass --min-sites 2",
        ),
        (None, [], "file '{path}': not found"),
        (  # once ignored without a word
            csv_text(hospitals()),
            ["--sites", "5", "--alpha", "0.3"],
            "command line: '--sites' splits one table into sites, but its site column 'hospital' names each row's "
            "hospital: drop --sites and --alpha",
        ),
    ],
    ids=[
        "shifted-rows",
        "empty-site",
        "wrong-site-column",
        "wrong-delimiter",
        "rare-label",
        "too-few-sites",
        "no-file",
        "split-options-with-a-site-column",
    ],
)
def test_bad_data_is_refused_by_the_users_file_and_row_before_anything_starts(tmp_path, text, args, problem):
    path = tmp_path / "patients.csv"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "run"
    base = ["--data", str(path), "--label", "outcome", "--site-column", "hospital", "--out", str(out)]
    result = CliRunner().invoke(cli, [*base, *args])
    assert (result.exit_code, result.output) == (2, f"error: {problem.format(path=path)}\n")
    assert not out.exists() and not ray.is_initialized()


@pytest.mark.parametrize(
    ("column", "says"),
    [  # once: "site '59.7', ..., column 'outcome': ..." about a one-row site, the first one inferred
        (
            "age",
            r"column 'age': gives (\d+) sites, \1 of them with fewer rows than data.min-rows = 20 \('[\d.]+', "
            r"('[\d.]+', ){4}'[\d.]+' and \d+ more\): is it the column naming each row's hospital\?",
        ),
        (
            "hospital",
            r"column 'hospital': gives 4 sites, 1 of them with fewer rows than data.min-rows = 20 \('tiny'\): "
            r"give their rows to another site, or remove them",
        ),
    ],
)
def test_a_site_column_giving_sites_too_small_to_train_is_refused_by_name(tmp_path, column, says):
    frame = hospitals(90)
    frame.loc[:9, "hospital"] = "tiny"
    path = tmp_path / "patients.csv"
    path.write_text(csv_text(frame))
    args = ["--data", str(path), "--label", "outcome", "--site-column", column, "--check", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and re.search(says, result.output), result.output


def test_options_that_split_a_table_are_refused_for_a_folder_of_sites(tmp_path):
    folder = tmp_path / "sites"
    folder.mkdir()
    for name, rows in hospitals(90).groupby("hospital"):
        (folder / f"{name}.csv").write_text(csv_text(rows.drop(columns="hospital")))
    args = ["--data", str(folder), "--label", "outcome", "--partition", "iid", "--check", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == (
        f"error: command line: '--partition' splits one table into sites, but '{folder}' is a folder whose files (or "
        "sub-folders) are its sites: drop --partition"
    )
    assert CliRunner().invoke(cli, args[:4] + args[6:]).exit_code == 0


def test_a_run_that_fails_before_saving_a_round_leaves_no_folder(tmp_path, monkeypatch):
    def fails(study, sites, folder, **_):
        raise DataError(sites[0].name, "cannot be read as a table (ParserError)", file=str(sites[0].data_path))

    monkeypatch.setattr(simulations.runner, "simulate", fails)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--out", str(out)])
    assert result.exit_code == 2 and "error: site 'hospital-1', file" in result.output
    assert not out.exists()


def test_a_model_over_the_simulated_sites_size_cap_is_refused_before_the_server_builds_it(tmp_path):
    study = get_task("tabular").demo_study().to_dict()
    study["model"]["hidden"] = [50_000, 50_000]  # 37 GiB to train, more than this machine would spare
    path = tmp_path / "big.json"
    path.write_text(json.dumps(study))
    out = tmp_path / "run"
    args = ["--study", str(path), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "policy.max-training-mib = 16384" in result.output, result.output
    assert "(--site-max-training-mib sets the simulated sites' cap)" in result.output
    assert not out.exists() and not ray.is_initialized()
    roomy = CliRunner().invoke(cli, [*args, "--site-max-training-mib", "40000", "--check"])
    assert roomy.exit_code == 0 and "checked: 3 sites, nothing trained" in roomy.output, roomy.output


def test_an_initial_model_that_does_not_fit_the_study_is_refused_before_anything_starts(tmp_path):
    """Its path is read from the study file's folder, and its weights are checked against the study's model."""
    other = get_task("tabular").demo_study().to_dict()
    other["model"]["hidden"] = [8]
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.safetensors"
    save_file(
        {k: v.contiguous() for k, v in build_model(StudyConfig.from_dict(other)).state_dict().items()}, str(model)
    )
    study = get_task("tabular").demo_study().to_dict()
    study["federation"].update(
        {
            "initial-model": "models/m.safetensors",
            "initial-model-sha256": weights_sha256(read_model_file(model)),
        }
    )
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--study", str(path), "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"model file {model}: 'federation.initial-model' is not this study's model" in text
    assert not out.exists() and not ray.is_initialized()


def test_a_site_that_dropping_rows_leaves_one_class_is_told_the_remedy_and_missing_impute_keeps_them(tmp_path):
    frame = hospitals(90)
    frame["bmi"] = np.resize([24.0, 31.5, 27.2], 90)
    frame.loc[(frame["hospital"] == "east") & (frame["outcome"] == "yes"), "bmi"] = np.nan  # recorded for "no" only
    path = tmp_path / "patients.csv"
    path.write_text(csv_text(frame))
    out = tmp_path / "run"
    args = ["--data", str(path), "--label", "outcome", "--site-column", "hospital", "--out", str(out), "--check"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and refused.output.endswith(
        f"error: site 'east', file '{path}', column 'outcome': only one class left after cleaning; a site needs rows "
        'of two classes; rows missing a feature value were dropped (data.missing = "drop"), and data.missing = '
        '"impute" keeps them\n'
    ), refused.output
    kept = CliRunner().invoke(cli, [*args, "--missing", "impute"])
    assert kept.exit_code == 0 and "checked: 3 sites, nothing trained" in kept.output, kept.output
    assert json.loads((out / "study.json").read_text())["data"]["missing"] == "impute"


def test_medmnist_style_npz_is_split_into_sites(tmp_path):
    images, labels, _ = synthetic_images(300, seed=4)
    path = tmp_path / "lesions.npz"
    np.savez(path, train_images=images, train_labels=labels[:, None])
    out = tmp_path / "run"
    args = ["--task", "imaging", "--data", str(path), "--partition", "iid", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--check"])
    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        f"checked: 3 sites, nothing trained; run it with: medfed-sim --study {out}/study.json\n"
    )
    assert not (out / "history.json").exists() and not (out / "model.safetensors").exists()
    (out / "history.json").write_text("{}")  # a run's outputs: a check never writes over them
    again = CliRunner().invoke(cli, [*args, "--check"])
    assert again.exit_code == 2 and f"'--out' {out} holds a run's outputs" in again.output, again.output
    study = json.loads((out / "study.json").read_text())
    assert study["name"] == "lesions" and study["data"]["classes"] == [0, 1] and study["data"]["image-size"] == 28
    held = [np.load(p)["train_images"].shape[0] for p in sorted((out / "sites").glob("*.npz"))]
    assert held == [100, 100, 100]


@pytest.mark.parametrize(("target", "task"), [("train_labels", "imaging"), ("train_masks", "segmentation")])
def test_an_image_set_needs_no_task_option(tmp_path, target, task):
    """A .npz is no table: it once asked for --label COLUMN. Its arrays say which image task it is for."""
    images, labels, masks = synthetic_images(120, seed=4)
    path = tmp_path / "set.npz"
    np.savez(path, train_images=images, **{target: labels[:, None] if target == "train_labels" else masks})
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--data", str(path), "--partition", "iid", "--out", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert f"defaults for {task} sites of about 40 images each" in result.output
    assert json.loads((out / "study.json").read_text())["task"] == task


def test_an_image_split_that_leaves_a_site_without_a_class_is_refused_by_the_users_file_before_anything_starts(
    tmp_path,
):
    images, _, _ = synthetic_images(300, seed=4)
    path = tmp_path / "scans.npz"
    np.savez(path, train_images=images, train_labels=(np.arange(300) < 3).astype(int)[:, None])  # 3 positive images
    out = tmp_path / "run"
    args = ["--task", "imaging", "--data", str(path), "--partition", "iid", "--out", str(out), "--no-baselines"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.endswith(
        f"\nerror: site 'hospital-1', file '{path}': class(es) ['1'] have fewer training images than "
        "data.min-per-class = 2; a site needs two classes that reach it; its images are its share of this file, "
        "split over 3 sites (iid): try fewer --sites, another --seed\n"
    )
    assert not out.exists() and not ray.is_initialized()


def test_notes_file_is_split_into_sites_by_label(tmp_path):
    path = tmp_path / "notes.jsonl"
    synthetic_notes(300, seed=5).rename(columns={"label": "service"}).to_json(path, orient="records", lines=True)
    out = tmp_path / "run"
    args = ["--task", "text", "--data", str(path), "--label", "service", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--check"])
    assert result.exit_code == 0 and "checked: 3 sites, nothing trained" in result.output, result.output
    study = json.loads((out / "study.json").read_text())
    assert study["data"]["label-column"] == "service" and study["data"]["classes"] == sorted(CLASSES)
    assert sum(len(pd.read_csv(p)) for p in (out / "sites").glob("*.csv")) == 300


def test_a_notes_file_whose_text_column_is_not_text_is_read_and_a_site_it_cannot_train_is_refused_before_ray(
    tmp_path,
):
    notes = synthetic_notes(300, seed=5).rename(columns={"text": "abstract", "label": "service"})
    notes["hospital"] = np.resize(["north", "south", "east"], 300)
    notes.loc[notes["hospital"] == "east", "service"] = CLASSES[0]  # east's notes hold one class only
    path = tmp_path / "abstracts.csv"
    notes.to_csv(path, index=False)
    out = tmp_path / "run"
    args = ["--task", "text", "--data", str(path), "--label", "service", "--site-column", "hospital"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--no-baselines"])
    assert result.exit_code == 2 and result.output.startswith(f"error: site 'east', file '{path}': "), result.output
    assert "a site needs two classes" in result.output
    assert not out.exists() and not ray.is_initialized()
    notes.loc[notes["hospital"] == "east", "service"] = np.resize(CLASSES, 100)
    notes.to_csv(path, index=False)
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "study.json").read_text())["data"]["text-column"] == "abstract"


def test_secure_aggregation_with_two_sites_per_round_is_refused_by_name():
    result = CliRunner().invoke(cli, ["--secure-aggregation", "on", "--min-sites", "2"])
    assert result.exit_code == 2 and "federation.min-sites" in result.output
    assert 'secure-aggregation = "off"' in result.output and "Traceback" not in result.output


def test_a_study_every_site_refuses_ends_with_no_federated_figures_and_no_audit_of_the_untrained_model(tmp_path):
    out = tmp_path / "run"
    args = ["--dp", "local", "--epsilon", "8", "--site-max-epsilon", "3", "--rounds", "1", "--no-baselines"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 1 and "status: stopped: round 1: only 0 usable update(s)" in result.output
    assert "no federated figures at any site: no final evaluation came from there" in " ".join(result.output.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["federated"]["per_site"] == {}
    assert all("mia-auc" not in p for p in summary["privacy"].values())  # the saved model never trained


def test_a_study_files_relative_data_path_is_read_from_the_files_folder(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    breast_cancer_table().to_csv(folder / "patients.csv", index=False)
    study = get_task("tabular").demo_study().to_dict()
    study["simulation"] |= {"data": "patients.csv", "sites": 3}
    (folder / "study.json").write_text(json.dumps(study))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--study", str(folder / "study.json"), "--check", "--out", str(out)])
    assert result.exit_code == 0, result.output  # run from the test's working folder, not the study's
    assert json.loads((out / "study.json").read_text())["simulation"]["data"] == str(folder / "patients.csv")


def test_an_error_naming_brackets_is_printed_as_written_not_read_as_markup(tmp_path):
    missing = tmp_path / "[b]x" / "[/b].csv"
    result = CliRunner().invoke(cli, ["--data", str(missing), "--label", "y"])
    assert result.exit_code == 2 and f"error: file '{missing}': not found" in result.output
