"""Imaging task: CNN and ResNet-18 shapes, Opacus compatibility, DP training, metrics and the synthetic demo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError
from shared.privacy.site import dp_compatible, grad_sample_mode
from shared.tasks import build_model, get_task
from shared.tasks.imaging.demo import synthetic_images, write_demo_sites
from shared.tasks.imaging.model import BasicBlock
from tests.shared.tasks.private import train_private

TASK = get_task("imaging")


def test_cnn_shapes_and_opacus_validation():
    study = TASK.demo_study()
    model = build_model(study)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert dp_compatible(model) is model  # nothing to fix
    assert grad_sample_mode(model, "auto", 32) == "ew"


def test_resnet18_layout_shapes_and_opacus_validation():
    raw = TASK.demo_study().to_dict()
    raw["model"] = {"name": "resnet18", "width": 8}
    raw["data"].update({"channels": 3, "classes": ["a", "b", "c"]})
    model = build_model(StudyConfig.from_dict(raw))
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 3)
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8  # ResNet-18: 4 stages x 2 blocks
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert ModuleValidator.validate(model, strict=False) == []


@pytest.mark.parametrize("size", [4, 4096])
def test_an_image_size_a_site_could_not_hold_is_refused_by_name(size):
    raw = TASK.demo_study().to_dict()
    raw["data"]["image-size"] = size  # every image is held at this size: 4096 pixels is 64 MiB a grayscale image
    with pytest.raises(ConfigError, match=r"data.image-size.*must be in 8\.\.1024 pixels"):
        TASK.check_study(StudyConfig.from_dict(raw))


def test_unknown_model_name_is_a_config_error():
    raw = TASK.demo_study().to_dict()
    raw["model"] = {"name": "unet"}  # a segmentation network is not a classifier
    with pytest.raises(ConfigError, match="model.name"):
        TASK.check_study(StudyConfig.from_dict(raw))


def test_metrics_report_sensitivity_and_specificity_per_class():
    raw = TASK.demo_study().to_dict()
    raw["data"]["classes"] = ["normal", "benign", "malignant"]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = TASK.metrics(StudyConfig.from_dict(raw), y, probs)
    assert m["sensitivity-normal"] == 0.5 and m["sensitivity-benign"] == 1.0 and m["sensitivity-malignant"] == 0.5
    assert m["specificity-normal"] == 0.75 and m["specificity-benign"] == 0.75 and m["specificity-malignant"] == 1.0


@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_models_train_with_dp(tmp_path, model):
    study = dataclasses.replace(
        TASK.demo_study(), model={"name": model, "width": 8}, privacy=PrivacyConfig(mode="local", epsilon=3.0)
    )
    data = TASK.load_site(write_demo_sites(tmp_path, 3)[0], "h1", study)
    _, loss, epsilon = train_private(study, data, tmp_path / "ledgers", batch_size=32)
    assert np.isfinite(loss) and 0 < epsilon < 3.0


def test_synthetic_lesions_are_balanced_and_visible():
    images, labels, masks = synthetic_images(200, seed=1)
    assert images.shape == (200, 28, 28) and labels.mean() == 0.5
    assert images[labels == 1].max(axis=(1, 2)).mean() > images[labels == 0].max(axis=(1, 2)).mean() + 20
    assert (masks[labels == 0] == 0).all() and (masks[labels == 1].reshape(100, -1).max(1) == 1).all()
    assert images[masks == 1].mean() > images[masks == 0].mean() + 40  # the mask marks the bright lesion
