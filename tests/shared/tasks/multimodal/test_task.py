"""The fused model: a missing modality cannot sway a prediction, Opacus trains it under local DP, each encoder's update
is weighed by its patients, and evaluation scores each modality alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from shared.arrays import model_arrays
from shared.config import FederationConfig, PrivacyConfig
from shared.errors import ConfigError
from shared.tasks import build_model, get_task
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.model import _drop_modalities
from shared.tasks.multimodal.spec import MODALITIES, data_spec
from tests.shared.tasks.multimodal.patients import tiny_study, write_site
from tests.shared.tasks.private import train_private

TASK = get_task("multimodal")
FUSIONS = ("concat", "gated", "attention")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path, _ = write_site(tmp_path_factory.mktemp("site"))
    return path


@pytest.fixture(scope="module")
def data(site):
    """The tiny site loaded once: the fusion does not change what is loaded."""
    return TASK.load_site(site, "west", tiny_study())


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_missing_modality_gives_the_same_prediction_whatever_sits_in_its_slot(data, fusion):
    study = tiny_study(fusion=fusion)
    torch.manual_seed(0)
    model = build_model(study).eval()
    rows = data.test.tensors[0]
    layout = Layout.of(data_spec(study))
    no_image = ~layout.mask(rows)[:, MODALITIES.index("image")]
    assert no_image.any()
    other = rows.clone()
    other[:, layout.parts["image"]] = torch.where(no_image[:, None], torch.rand_like(rows[:, layout.parts["image"]]), 0)
    other[no_image, layout.parts["image"].start] = float("nan")
    with torch.no_grad():
        same, changed = model(rows), model(other)
    assert torch.equal(same[no_image], changed[no_image])
    assert torch.isfinite(changed).all()
    shown = layout.with_mask(other.nan_to_num(), torch.ones_like(layout.mask(rows)))
    with torch.no_grad():  # the same slot is read once the mask says the image is there
        assert not torch.equal(model(shown)[no_image], same[no_image])


def test_modality_dropout_never_hides_everything_a_patient_has():
    mask = torch.tensor([[True, False, False], [True, True, True]]).repeat(200, 1)
    dropped = _drop_modalities(mask, 0.9)
    assert dropped.any(dim=1).all() and not (dropped & ~mask).any()
    assert (dropped.sum(dim=1) < mask.sum(dim=1)).any()


def test_opacus_validates_every_fusion_and_trains_the_fused_model_under_local_dp(data, tmp_path):
    for fusion in FUSIONS:
        assert ModuleValidator.validate(build_model(tiny_study(fusion=fusion)), strict=True) == [], fusion
    # Attention fusion: its score layer runs over (N, modalities, embedding), the least usual shape for Opacus.
    privacy = PrivacyConfig(mode="local", epsilon=8.0, noise_multiplier=1.0)
    study = dataclasses.replace(tiny_study(fusion="attention"), privacy=privacy)
    before = model_arrays(build_model(study))
    model, loss, epsilon = train_private(study, data, tmp_path / "ledgers", batch_size=8)
    after = model_arrays(model)
    assert np.isfinite(loss) and 0 < epsilon <= 8.0
    for m in ("record", "image", "note", "omics"):  # every encoder and the head took a private step
        keys = [k for k in after if k.startswith(f"encoders.{m}.net")]
        assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in keys), m
    assert all(np.isfinite(a.numpy()).all() for a in after.values())


def test_a_site_weighs_each_encoders_update_by_the_share_of_its_patients_who_had_the_modality(tmp_path):
    path, table = write_site(tmp_path)
    table.drop(columns=["note"]).to_csv(path, index=False)
    study = tiny_study()
    data = TASK.load_site(path, "east", study)
    received = model_arrays(build_model(study))
    torch.manual_seed(1)
    trained = build_model(study)  # stands for the trained model: every value differs from `received`
    sent = TASK.reply_arrays(study, trained, data, received)
    share = float(Layout.of(data_spec(study)).mask(data.train.tensors[0])[:, MODALITIES.index("image")].float().mean())
    assert 0 < share < 1 and float(sent["encoders.image.coverage"].numpy()[0]) == pytest.approx(share)
    assert float(sent["encoders.note.coverage"].numpy()[0]) == 0.0
    key = "encoders.image.net.0.weight"
    step = trained.state_dict()[key].numpy() - received[key].numpy()
    assert np.allclose(sent[key].numpy() - received[key].numpy(), share * step, atol=1e-6)
    note = "encoders.note.net.tokens.weight"
    assert np.array_equal(sent[note].numpy(), received[note].numpy())  # no note here: the encoder is sent unchanged
    assert np.array_equal(sent["head.0.weight"].numpy(), trained.state_dict()["head.0.weight"].numpy())


def test_evaluation_reports_coverage_and_each_modality_alone(data):
    study = tiny_study()
    metrics = TASK.evaluate(study, build_model(study), data, torch.device("cpu"))
    for m in ("record", "image", "note", "omics"):
        assert 0 < metrics[f"coverage/{m}"] <= 1
        assert 0 <= metrics[f"accuracy/only-{m}"] <= 1
    assert "roc-auc" in metrics and "loss" in metrics


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"federation": FederationConfig(strategy="krum", min_sites=5)}, "federation.strategy"),
        ({"federation": FederationConfig(strategy="fedmedian")}, "federation.strategy"),
        ({"privacy": PrivacyConfig(mode="central-server")}, "privacy.mode"),
    ],
)
def test_rules_that_cannot_average_per_modality_are_a_config_error(change, field):
    with pytest.raises(ConfigError) as raised:
        TASK.check_study(dataclasses.replace(tiny_study(), **change))
    assert raised.value.field == field
