"""Loading a site's patients: modalities missing per patient and per site, and every bad input named by site, file,
column and row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.config import StudyConfig
from shared.errors import ConfigError, DataError
from shared.tasks import get_task
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.spec import MODALITIES, data_spec
from tests.shared.tasks.multimodal.patients import N, tiny_study, write_site

TASK = get_task("multimodal")


def load(path, **data):
    return TASK.load_site(path, "west", tiny_study(**data))


def test_each_patient_has_what_its_row_holds_and_coverage_is_reported(tmp_path):
    path, _ = write_site(tmp_path)
    data = load(path)
    assert len(data.train) + len(data.val) + len(data.test) == N  # the validation split places the threshold
    assert len(data.val) == data.report["validation-rows"] > 0
    assert data.report["coverage"] == {"record": 1.0, "image": 0.75, "note": 0.75, "omics": 0.75}
    layout = Layout.of(data_spec(tiny_study()))
    rows = np.concatenate([part.tensors[0].numpy() for part in (data.train, data.val, data.test)])
    mask = layout.mask(torch.from_numpy(rows)).numpy()
    absent_image = ~mask[:, MODALITIES.index("image")]
    assert (rows[absent_image][:, layout.parts["image"]] == 0).all()  # nothing is read for a missing image
    assert (mask.sum(axis=1) >= 3).all()  # every fourth patient lacks exactly one optional modality


def test_a_site_without_a_modalitys_column_lacks_it_for_everyone(tmp_path):
    path, table = write_site(tmp_path)
    table.drop(columns=["note", "g1", "g2", "g3"]).to_csv(path, index=False)
    data = load(path)
    assert data.report["coverage"]["note"] == 0.0 and data.report["coverage"]["omics"] == 0.0


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("images/nowhere.png", "do not exist"),
        ("../outside.png", "outside the site's data folder"),
        ("/etc/hostname", "outside the site's data folder"),
        ("images/link.png", "outside the site's data folder"),
    ],
    ids=["missing", "parent", "absolute", "symlink-out"],
)
def test_an_image_path_that_is_absent_or_leaves_the_site_folder_is_refused_with_its_row(tmp_path, cell, problem):
    site = tmp_path / "site"
    path, table = write_site(site)
    (tmp_path / "outside.png").write_bytes((site / "images" / "p0.png").read_bytes())
    (site / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    table.loc[[4, 6], "image"] = cell
    table.to_csv(path, index=False)
    with pytest.raises(DataError) as raised:
        load(path)
    message = str(raised.value)
    assert problem in message and "data row(s) 5, 7" in message
    assert "'west'" in message and str(path) in message and "column 'image'" in message


def test_an_unreadable_image_names_its_row(tmp_path):
    path, table = write_site(tmp_path)
    (tmp_path / "images" / "p0.png").write_text("not an image")
    with pytest.raises(DataError, match=r"column 'image'.*data row 1: 'images/p0.png' is not a readable image"):
        load(path)


def test_a_note_column_that_is_not_text_is_refused(tmp_path):
    path, table = write_site(tmp_path)
    table["note"] = np.arange(N) * 1.5
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'note'.*not text.*first at data row 1"):
        load(path)


def test_omics_columns_differing_from_the_studys_list_are_named(tmp_path):
    path, table = write_site(tmp_path)
    table.drop(columns=["g1", "g3"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"'west'.*lacks 2 of the study's 3 omics columns \(data.omics\): g1, g3"):
        load(path)


def test_non_numeric_omics_values_are_refused_with_their_row(tmp_path):
    path, table = write_site(tmp_path)
    table["g2"] = table["g2"].astype(object)
    table.loc[5, "g2"] = "high"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'g2'.*non-numeric.*first at data row 6"):
        load(path)


def test_a_required_modality_absent_at_the_site_is_refused(tmp_path):
    path, table = write_site(tmp_path)
    table.drop(columns=["image"]).to_csv(path, index=False)
    assert load(path).report["coverage"]["image"] == 0.0  # allowed while not required
    with pytest.raises(DataError, match=r"'west'.*column 'image': the study requires modality 'image'"):
        load(path, required=["image"])


def test_too_few_patients_with_a_modality_refuse_or_sit_out_as_the_study_says(tmp_path):
    path, table = write_site(tmp_path)
    table.loc[3:, "note"] = ""
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"modality 'note' is present for fewer training patients than data.min-pat"):
        load(path, **{"min-patients": 10, "too-few": "refuse"})
    data = load(path, **{"min-patients": 10})
    layout = Layout.of(data_spec(tiny_study()))
    assert not layout.mask(data.train.tensors[0])[:, MODALITIES.index("note")].any()  # sits out of training
    assert any("'note' sits out training" in note for note in data.report["notes"])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"required": ["genome"]}, "data.required"),
        ({"omics": ["g1", "crp"]}, "data"),
        ({"image-size": 100_000}, "data.image-size"),
        ({"max-length": 1_000_000}, "data.max-length"),
        ({"too-few": "ignore"}, "data.too-few"),
    ],
)
def test_study_values_are_bounded_and_named(data, field):
    with pytest.raises(ConfigError) as raised:
        TASK.check_study(tiny_study(**data))
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"text-dim": 100_000}, "model.text-dim"),
        ({"record-hidden": [10**7]}, "model.record-hidden"),
        ({"omics-hidden": [4] * 50}, "model.omics-hidden"),
        ({"image-width": 10**5}, "model.image-width"),
        ({"fusion": "sum"}, "model.fusion"),
        ({"text-network": "bert"}, "model.text-network"),
        ({"text-network": "pretrained", "text-encoder": "../bert"}, "model.text-encoder"),
        ({"text-trainable-layers": -1}, "model.text-trainable-layers"),
    ],
)
def test_model_sizes_a_study_sets_at_the_sites_are_bounded(model, field):
    raw = tiny_study().to_dict()
    raw["model"].update(model)
    with pytest.raises(ConfigError) as raised:
        TASK.check_study(StudyConfig.from_dict(raw))
    assert raised.value.field == field
