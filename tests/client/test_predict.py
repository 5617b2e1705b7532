"""`medfed-site predict`: a study's final model applied at a site to its held-out rows reproduces the metrics the site
reported, with the site's own kept statistics (tabular, and multimodal with its omics file); bad input gets the
training data's named errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file
from typer.testing import CliRunner

from client.cli import cli
from client.kept import kept_path
from client.predict import predict_file
from client.site import SiteConfig
from client.sitefile import SitePolicy
from shared.arrays import model_arrays
from shared.config import StudyConfig
from shared.errors import ConfigError, DataError, PolicyError
from shared.metrics import classification_metrics
from shared.partition import split_indices
from shared.tasks import get_task
from shared.tasks.counting import count_examples
from shared.tasks.footprint import model_footprint
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.spec import data_spec as multimodal_spec
from shared.tasks.tabular.demo import CLASSES, LABEL, demo_study
from shared.tasks.tabular.spec import data_spec
from tests.conftest import with_federation
from tests.localgrid import run_in_process
from tests.shared.tasks.multimodal.patients import matrix_study, write_matrix_site


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The built-in study, one round over its 3 hospitals in process; each site keeps its state under ledgers/."""
    root = tmp_path_factory.mktemp("predict")
    history = run_in_process(with_federation(demo_study(), rounds=1), root / "run", root / "sites", root / "ledgers")
    assert history.status == "completed"
    sites = [
        SiteConfig(f"hospital-{i}", root / "sites" / f"hospital-{i}.csv", ledger_dir=root / "ledgers")
        for i in (1, 2, 3)
    ]
    return root, root / "run", sites, history


def held_out_rows(study: StudyConfig, site: SiteConfig) -> pd.DataFrame:
    """The site's held-out split, as rows of its file (the demo drops no row), with an id column."""
    table = pd.read_csv(site.data_path)
    y = table[LABEL].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    _, test = split_indices(y, data_spec(study).test_fraction, study.seed)
    return table.iloc[test].assign(patient=[f"p{i}" for i in test])


def test_predict_on_the_held_out_rows_reproduces_the_metrics_the_site_reported(trained):
    root, folder, sites, history = trained
    study = StudyConfig.from_json(json.dumps(json.loads((folder / "study.json").read_text())))
    site = sites[0]
    rows = held_out_rows(study, site)
    rows.to_csv(root / "new.csv", index=False)
    out = root / "predictions.csv"
    args = ["predict", "--study", str(folder / "study.json"), "--model", str(folder / "model.safetensors")]
    args += ["--data", str(root / "new.csv"), "--out", str(out), "--id", "patient"]
    result = CliRunner().invoke(cli, [*args, "--site", site.name, "--ledger-dir", str(root / "ledgers")])
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(out)
    assert predicted.columns.tolist() == ["patient", "probability-benign", "probability-malignant", "predicted"]
    assert predicted["patient"].tolist() == rows["patient"].tolist()
    probs = predicted[["probability-benign", "probability-malignant"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    threshold = json.loads(kept_path(site, study).read_text())["threshold"]  # chosen on its validation split
    assert (predicted["predicted"] == np.array(CLASSES)[(probs[:, 1] >= threshold).astype(int)]).all()
    y_true = rows[LABEL].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    ours = classification_metrics(y_true, probs, CLASSES, threshold)
    (reported,) = [r for r in history.rows if r["kind"] == "eval" and r["round"] == 1 and r["site"] == site.name]
    for metric in ("accuracy", "roc-auc", "balanced-accuracy", "f1"):
        assert ours[metric] == pytest.approx(reported[metric], abs=1e-9), metric


def test_another_site_uses_its_own_statistics(trained):
    root, folder, sites, _ = trained
    study = StudyConfig.from_json((folder / "study.json").read_text())
    kept = [json.loads(kept_path(s, study).read_text()) for s in sites[:2]]
    assert kept[0]["means"] != kept[1]["means"]  # each site standardised with its own train split
    new = held_out_rows(study, sites[0]).head(5)
    new.to_csv(root / "five.csv", index=False)
    first, second = (predict_file(study, folder / "model.safetensors", root / "five.csv", s) for s in sites[:2])
    assert first["row"].tolist() == ["1", "2", "3", "4", "5"]
    assert not np.allclose(first["probability-malignant"], second["probability-malignant"])


def test_the_new_patients_file_is_what_the_memory_cap_weighs(trained):
    root, folder, sites, _ = trained
    study = StudyConfig.from_json((folder / "study.json").read_text())
    many = pd.concat([held_out_rows(study, sites[0])] * 200)
    many.to_csv(root / "many.csv", index=False)
    size = model_footprint(study)
    own, new = (size.data_mib(count_examples(p)) for p in (sites[0].data_path, root / "many.csv"))
    assert new > 20 * own
    cap = size.training_mib + (own + new) / 2  # room for the site's own rows, not for the new ones
    site = dataclasses.replace(sites[0], policy=SitePolicy(max_training_mib=cap))
    with pytest.raises(PolicyError, match="this site's data, loaded at the study's sizes"):
        predict_file(study, folder / "model.safetensors", root / "many.csv", site)
    held_out_rows(study, sites[0]).head(3).to_csv(root / "three.csv", index=False)
    assert len(predict_file(study, folder / "model.safetensors", root / "three.csv", site)) == 3


def test_bad_rows_get_the_training_errors_and_a_site_that_never_trained_is_told(trained):
    root, folder, sites, _ = trained
    study = StudyConfig.from_json((folder / "study.json").read_text())
    bad = held_out_rows(study, sites[0]).head(4).astype({"mean_radius": object})
    bad.iloc[2, bad.columns.get_loc("mean_radius")] = "abc"
    bad.to_csv(root / "bad.csv", index=False)
    args = ["predict", "--study", str(folder / "study.json"), "--model", str(folder / "model.safetensors")]
    args += ["--out", str(root / "never.csv"), "--site", sites[0].name, "--ledger-dir", str(root / "ledgers")]
    result = CliRunner().invoke(cli, [*args, "--data", str(root / "bad.csv")])
    assert result.exit_code == 2
    assert "column 'mean_radius': 1 non-numeric value(s) in a numeric column, first at data row 3" in result.output
    elsewhere = CliRunner().invoke(cli, [*args, "--data", str(root / "new.csv"), "--site", "hospital-9"])
    assert elsewhere.exit_code == 2 and "was never trained at site 'hospital-9'" in elsewhere.output
    assert not (root / "never.csv").exists()


def test_survival_predicts_a_risk_and_survival_at_each_horizon():
    task = get_task("survival")
    study = task.demo_study()
    discrete = dataclasses.replace(study, model={**study.model, "name": "discrete"})
    spec = discrete.data
    logits = torch.zeros(3, len(spec["cut-points"])).numpy()
    logits[1] += 2.0  # a higher hazard in every interval: an earlier event
    columns = task.prediction_columns(discrete, logits.astype(float), {})
    assert list(columns) == ["risk", *[f"survival@{t:g}" for t in spec["horizons"]]]
    assert columns["risk"][1] > columns["risk"][0]
    assert all(np.all(np.diff([columns[k][i] for k in list(columns)[1:]]) <= 0) for i in range(3))


def test_a_row_training_would_drop_keeps_its_place_without_a_prediction(trained):
    root, folder, sites, _ = trained
    study = StudyConfig.from_json((folder / "study.json").read_text())
    rows = held_out_rows(study, sites[0]).head(4)
    rows.iloc[1, rows.columns.get_loc("mean_texture")] = None  # data.missing = "drop": training drops this row
    rows.to_csv(root / "gap.csv", index=False)
    predicted = predict_file(study, folder / "model.safetensors", root / "gap.csv", sites[0], "patient")
    assert predicted["patient"].tolist() == rows["patient"].tolist()
    assert predicted["predicted"].isna().tolist() == [False, True, False, False]
    assert predicted["probability-malignant"].isna().tolist() == [False, True, False, False]


@pytest.fixture(scope="module")
def multimodal_trained(tmp_path_factory):
    """The tiny multimodal study, one round at one site whose omics sit in a matrix file beside its table."""
    root = tmp_path_factory.mktemp("multimodal")
    path, table, _ = write_matrix_site(root / "west")
    site = SiteConfig("west", path, ledger_dir=root / "ledgers")
    study = with_federation(matrix_study(**{"modality-dropout": 0.0}), rounds=1)
    history = run_in_process(study, root / "run", root / "unused", root / "ledgers", sites=[site])
    assert history.status == "completed"
    return root, StudyConfig.from_json((root / "run" / "study.json").read_text()), site, table, history


def test_multimodal_predict_on_the_held_out_patients_reproduces_the_metrics_the_site_reported(multimodal_trained):
    root, study, site, table, history = multimodal_trained
    y = (table["y"] == "yes").to_numpy().astype(int)
    _, test = split_indices(y, multimodal_spec(study).test_fraction, study.seed)
    new = site.data_path.parent / "new.csv"  # beside the site's images and omics file, which it names
    table.iloc[test].to_csv(new, index=False)
    out = root / "predictions.csv"
    args = ["predict", "--study", str(root / "run" / "study.json"), "--model", str(root / "run" / "model.safetensors")]
    args += [
        "--data",
        str(new),
        "--out",
        str(out),
        "--id",
        "pid",
        "--site",
        "west",
        "--ledger-dir",
        str(root / "ledgers"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(out)
    assert predicted.columns.tolist() == ["pid", "probability-no", "probability-yes", "predicted"]
    assert predicted["pid"].tolist() == table["pid"].iloc[test].tolist()
    lacking = table.index[test] % 4 != 0  # patient i lacks its image, note or omics when i % 4 is 1, 2 or 3
    assert lacking.sum() >= 3 and predicted["predicted"].notna().all()  # and is predicted all the same
    probs = predicted[["probability-no", "probability-yes"]].to_numpy()
    ours = classification_metrics(
        y[test], probs, ["no", "yes"], json.loads(kept_path(site, study).read_text())["threshold"]
    )
    (reported,) = [r for r in history.rows if r["kind"] == "eval" and r["round"] == 1 and r["site"] == "west"]
    for metric in ("accuracy", "roc-auc"):
        assert ours[metric] == pytest.approx(reported[metric], abs=1e-9), metric


def test_multimodal_predict_keeps_a_dropped_rows_place_and_masks_what_a_patient_lacks(multimodal_trained):
    root, study, site, table, _ = multimodal_trained
    rows = table.iloc[4:10].reset_index(drop=True)  # patients 4..9: every fourth lacks one modality (patients.py)
    rows.loc[1, "age"] = None  # data.missing = "drop": training drops this row
    rows.loc[0, ["image", "note"]] = None
    rows.loc[4, "pid"] = "P999"  # absent from the omics file: no omics, still predicted
    new = site.data_path.parent / "gap.csv"
    rows.to_csv(new, index=False)
    model = root / "run" / "model.safetensors"
    predicted = predict_file(study, model, new, site)
    assert predicted["row"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert predicted["predicted"].isna().tolist() == [False, True, False, False, False, False]
    kept = json.loads(kept_path(site, study).read_text())
    inputs = get_task("multimodal").new_inputs(new, "west", study, kept, None)
    assert inputs.usable.tolist() == [True, False, True, True, True, True]
    assert Layout.of(multimodal_spec(study)).mask(inputs.inputs).int().tolist() == [  # record, image, note, omics
        [1, 0, 0, 1],
        [1, 1, 0, 1],
        [1, 1, 1, 0],
        [1, 1, 1, 0],
        [1, 0, 1, 1],
    ]
    rows.loc[4, "image"] = "../../outside.png"
    rows.to_csv(new, index=False)
    with pytest.raises(ConfigError, match="was never trained at site 'east'"):
        predict_file(study, model, new, dataclasses.replace(site, name="east"))
    with pytest.raises(DataError, match=r"column 'image': 1 image path\(s\) point outside .*: data row\(s\) 5"):
        predict_file(study, model, new, site)


def test_images_are_predicted_by_file_from_a_folder_and_by_number_from_a_npz_alike(tmp_path):
    task = get_task("imaging")
    study = task.demo_study()
    size = study.data["image-size"]
    model = task.build_model(study)  # untrained: the same weights serve both inputs
    weights = tmp_path / "model.safetensors"
    save_file({k: v.numpy() for k, v in model_arrays(model).items()}, str(weights))
    images = np.random.default_rng(0).integers(0, 256, (2, size, size), dtype=np.uint8)
    folder = tmp_path / "new"
    folder.mkdir()
    for name, image in zip(("a.png", "b.png"), images, strict=True):
        Image.fromarray(image).save(folder / name)
    (folder / ".DS_Store").write_bytes(b"\0\1 a Finder file, no image")
    (folder / "labels.csv").write_text("file,label\n")
    np.savez(tmp_path / "new.npz", images=images)
    site = SiteConfig("north", folder, ledger_dir=tmp_path / "ledgers")
    by_file = predict_file(study, weights, folder, site)
    by_number = predict_file(study, weights, tmp_path / "new.npz", site)
    classes = task.class_names(study)
    assert list(by_file.columns) == ["image", *[f"probability-{c}" for c in classes], "predicted"]
    assert by_file["image"].tolist() == ["a.png", "b.png"] and by_number["image"].tolist() == ["1", "2"]
    probabilities = [f"probability-{c}" for c in classes]
    np.testing.assert_allclose(by_file[probabilities], by_number[probabilities], atol=1e-6)
