"""Text models: forward/backward with and without DP, and federated fine-tuning of a local pretrained encoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from shared.arrays import load_arrays, model_arrays
from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError
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
    raw = TASK.demo_study().to_dict()
    raw["model"] = {"name": "pretrained", "path": str(folder), "trainable-layers": trainable_layers}
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


def test_pretrained_folder_missing_or_incomplete(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder holding a pretrained model"):
        TASK.build_model(pretrained_study(tmp_path / "nowhere", 0))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"lacks tokenizer.json, model.safetensors or pytorch_model.bin") as err:
        TASK.build_model(pretrained_study(tmp_path / "half", 0))
    assert "half" in str(err.value)


def test_pretrained_weights_pinned_by_hash_and_layer_count_checked(tmp_path):
    pytest.importorskip("transformers")
    folder = tiny_bert(tmp_path / "bert")
    raw = pretrained_study(folder, 0).to_dict()
    raw["model"]["sha256"] = "0" * 64
    with pytest.raises(ConfigError, match="model.sha256"):
        TASK.build_model(StudyConfig.from_dict(raw))
    with pytest.raises(ConfigError, match="is 5, the encoder has 2 layers"):
        TASK.build_model(pretrained_study(folder, 5))
