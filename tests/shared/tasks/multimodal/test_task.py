"""The fused model: a missing modality cannot sway a prediction, Opacus trains it under local DP, each encoder's update
is weighed by its patients, and evaluation scores each modality alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.grad_sample import GradSampleModuleExpandedWeights
from opacus.validators import ModuleValidator

from shared.arrays import model_arrays
from shared.config import FederationConfig, PrivacyConfig, StudyConfig
from shared.errors import ConfigError
from shared.models import OfferedModel, offer
from shared.privacy.site import grad_sample_mode
from shared.tasks import build_model, get_task
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.model import _drop_modalities
from shared.tasks.multimodal.spec import MODALITIES, data_spec
from tests.shared.tasks.multimodal.patients import OMICS, tiny_study, write_site
from tests.shared.tasks.private import train_private
from tests.shared.tasks.text.pretrained import tiny_bert

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
    # The note Transformer's embedding tables are small: ExpandedWeights, not the slower ghost clipping (BENCHMARKS.md).
    demo = TASK.demo_study()
    assert grad_sample_mode(build_model(demo), "auto", demo.train.batch_size) == "ew"
    # Attention fusion: its score layer runs over (N, modalities, embedding), the least usual shape for Opacus.
    privacy = PrivacyConfig(mode="local", epsilon=8.0, noise_multiplier=1.0)
    study = dataclasses.replace(tiny_study(fusion="attention"), privacy=privacy)
    before = model_arrays(build_model(study))
    model, loss, epsilon = train_private(study, data, tmp_path / "ledgers", batch_size=8)
    assert isinstance(model, GradSampleModuleExpandedWeights)
    after = model_arrays(model)
    assert np.isfinite(loss) and 0 < epsilon <= 8.0
    for m in ("record", "image", "note", "omics"):  # every encoder and the head took a private step
        keys = [k for k in after if k.startswith(f"encoders.{m}.net")]
        assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in keys), m
    assert all(np.isfinite(a.numpy()).all() for a in after.values())


def pretrained_note_study(folder: Path, trainable_layers: int, **data) -> StudyConfig:
    """The tiny study under local DP with the text task's pretrained encoder 'tiny', offered here from `folder`, as its
    note encoder."""
    offer({"tiny": OfferedModel(folder)})
    raw = tiny_study(**data).to_dict()
    raw["model"].update(
        {"text-network": "pretrained", "text-encoder": "tiny", "text-trainable-layers": trainable_layers}
    )
    raw["privacy"] = {"mode": "local", "epsilon": 8.0, "noise-multiplier": 1.0}
    return StudyConfig.from_dict(raw)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    pytest.importorskip("transformers")
    return tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("trainable_layers", [0, 1])
def test_a_pretrained_note_encoder_reads_its_own_tokens_and_only_its_trainable_tensors_travel(
    site, bert, tmp_path, trainable_layers
):
    study = pretrained_note_study(bert, trainable_layers)
    data = TASK.load_site(site, "west", study)
    layout = Layout.of(data_spec(study))
    rows = torch.cat([part.tensors[0] for part in (data.train, data.val, data.test)])
    has_note = layout.mask(rows)[:, MODALITIES.index("note")]
    assert (rows[has_note, layout.parts["note"].start] == 2).all()  # [CLS]: the model's own tokenizer.json
    assert int(has_note.sum()) == 30  # the 10 empty notes are no note, though the tokenizer gives them [CLS] [SEP]
    torch.manual_seed(0)
    pristine = build_model(study)
    sent = model_arrays(pristine)
    note = {k.removeprefix("encoders.note.net.") for k in sent if k.startswith("encoders.note.net.")}
    layer1 = {k for k in note if k.startswith("encoder.encoder.layer.1.")}
    assert note - layer1 == {"head.weight", "head.bias"} and bool(layer1) == bool(trainable_layers)
    torch.manual_seed(0)  # the same initial head
    model, loss, _ = train_private(study, data, tmp_path / "ledgers", batch_size=8)
    assert np.isfinite(loss)
    trained = model._module.state_dict()
    for key, value in pristine.state_dict().items():
        if key not in sent:
            assert torch.equal(value, trained[key]), key  # the frozen encoder never moves
    moved = {
        k
        for k in note
        if not torch.equal(pristine.state_dict()[f"encoders.note.net.{k}"], trained[f"encoders.note.net.{k}"])
    }
    assert moved == note  # the head, and the last layer when trainable, took the private step
    assert set(TASK.reply_arrays(study, model, data, sent)) == set(sent)  # the update holds trainable tensors only


def test_a_pretrained_note_encoder_is_checked_against_the_study(site, bert):
    with pytest.raises(ConfigError) as raised:  # the tiny BERT reads at most 128 tokens
        build_model(pretrained_note_study(bert, 0, **{"max-length": 200}))
    assert raised.value.field == "data.max-length"
    without_notes = pretrained_note_study(bert, 0, **{"note-column": ""})
    offer({})  # a study without notes never asks for its note encoder
    assert "note" not in build_model(without_notes).encoders


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


def test_validate_notes_that_the_omics_statistics_are_outside_local_dps_epsilon():
    study = tiny_study()
    private = dataclasses.replace(study, privacy=dataclasses.replace(study.privacy, mode="local", epsilon=3.0))
    assert get_task("multimodal").study_notes(study) == []
    (note,) = get_task("multimodal").study_notes(private)
    assert f"the medians, means and SDs of its {len(OMICS)} omics column(s)" in note
