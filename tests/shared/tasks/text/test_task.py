"""Text models: forward/backward with and without DP, and federated fine-tuning of a local pretrained encoder."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from shared.arrays import load_arrays, model_arrays
from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError
from shared.models import OfferedModel, offer
from shared.tasks import build_model, get_task
from shared.training import make_loader, make_optimizer, train_epochs
from tests.shared.tasks.private import train_private
from tests.shared.tasks.text.pretrained import tiny_bert

TASK = get_task("text")


def train_once(study, data, tmp_path, dp: bool):
    if dp:
        model, loss, _ = train_private(study, data, tmp_path / "ledgers")
        return model, loss
    model = build_model(study)
    optimizer, loader = make_optimizer(model, study.train), make_loader(data.train, 16, 0)
    return model, train_epochs(model, loader, TASK.loss(), optimizer, 1, torch.device("cpu"))


@pytest.mark.parametrize("dp", [False, True])
@pytest.mark.parametrize("tokenizer", ["hashing", "bytes"])
def test_transformer_trains_with_and_without_dp(tmp_path, dp, tokenizer):
    raw = TASK.demo_study().to_dict()
    raw["data"]["tokenizer"] = tokenizer
    study = StudyConfig.from_dict(raw)
    if dp:
        study = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=8.0))
    data = TASK.load_site(TASK.write_demo_sites(tmp_path, 3)[0], "h1", study)
    before = {k: v.clone() for k, v in build_model(study).state_dict().items()}
    model, loss = train_once(study, data, tmp_path, dp)
    assert np.isfinite(loss)
    after = getattr(model, "_module", model).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def pretrained_study(folder, trainable_layers: int, **privacy) -> StudyConfig:
    """A study naming the encoder 'tiny', which this process offers from `folder`."""
    offer({"tiny": OfferedModel(folder)})
    raw = TASK.demo_study().to_dict()
    raw["model"] = {"name": "pretrained", "encoder": "tiny", "trainable-layers": trainable_layers}
    raw["privacy"] = privacy or {"mode": "off"}
    return StudyConfig.from_dict(raw)


@pytest.mark.parametrize("trainable_layers", [0, 1])
def test_pretrained_encoder_fine_tunes_only_what_is_trainable(tmp_path, trainable_layers):
    pytest.importorskip("transformers")
    study = pretrained_study(tiny_bert(tmp_path / "bert"), trainable_layers, mode="local", epsilon=8.0)
    data = TASK.load_site(TASK.write_demo_sites(tmp_path, 3)[0], "h1", study)
    pristine = build_model(study)
    sent = model_arrays(pristine)
    layer1 = {k for k in sent if k.startswith("encoder.encoder.layer.1.")}
    assert set(sent) - layer1 == {"head.weight", "head.bias"} and bool(layer1) == bool(trainable_layers)
    assert not any(k.startswith("encoder.embeddings") or ".layer.0." in k for k in sent)
    model, loss = train_once(study, data, tmp_path, dp=True)
    assert np.isfinite(loss)
    trained = model._module.state_dict()
    for key, value in pristine.state_dict().items():
        assert torch.equal(value, trained[key]) == (key not in sent), key  # frozen weights never move
    fresh = build_model(study)
    load_arrays(fresh, model_arrays(model))  # a site receiving the update gets exactly the trained model
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize("encoder", ["/etc", "../models/x", "x/../../y", "~root"])
def test_a_study_can_never_name_a_path(encoder):
    raw = TASK.demo_study().to_dict()
    raw["model"] = {"name": "pretrained", "encoder": encoder}
    with pytest.raises(ConfigError, match="model.encoder.*never a path"):
        TASK.check_study(StudyConfig.from_dict(raw))


def test_refusals_name_the_model_never_its_folder_or_whether_it_exists(tmp_path, caplog):
    """A server probing the disk learns nothing: a missing folder, a half folder and an unknown name read alike."""
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    texts = []
    for folder in (tmp_path / "nowhere", tmp_path / "half"):
        with pytest.raises(ConfigError, match="'tiny' is not usable here") as err:
            TASK.build_model(pretrained_study(folder, 0))
        texts.append(str(err.value))
    assert texts[0] == texts[1] and str(tmp_path) not in texts[0]
    assert "lacks tokenizer.json, model.safetensors or pytorch_model.bin" in caplog.text  # the detail stays local
    raw = pretrained_study(tmp_path / "half", 0).to_dict()
    raw["model"]["encoder"] = "other"
    with pytest.raises(ConfigError, match="'other', which is not a model offered here"):
        TASK.build_model(StudyConfig.from_dict(raw))


def test_pretrained_weights_pinned_by_hash_and_layer_count_checked(tmp_path, caplog):
    pytest.importorskip("transformers")
    folder = tiny_bert(tmp_path / "bert")
    raw = pretrained_study(folder, 0).to_dict()
    raw["model"]["sha256"] = "0" * 64
    with pytest.raises(ConfigError, match="model.sha256") as err:
        TASK.build_model(StudyConfig.from_dict(raw))
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert digest not in str(err.value) and str(folder) not in str(err.value)  # no hash, no path to the server
    assert digest in caplog.text
    offer({"tiny": OfferedModel(folder, sha256="1" * 64)})  # the site's own pin holds whatever the study says
    raw["model"]["sha256"] = ""
    with pytest.raises(ConfigError, match="does not match its owner's pin"):
        TASK.build_model(StudyConfig.from_dict(raw))
    with pytest.raises(ConfigError, match="is 5, the encoder has 2 layers"):
        TASK.build_model(pretrained_study(folder, 5))
