"""Segmentation task: U-Net shapes and Opacus validation, the Dice + CE loss, Dice/IoU metrics, DP training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from shared.config import PrivacyConfig
from shared.tasks import build_model, get_task
from tests.shared.tasks.private import train_private

TASK = get_task("segmentation")


@pytest.mark.parametrize("size", [28, 32, 50])
def test_unet_keeps_the_image_size(size):
    model = build_model(TASK.demo_study())
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 2, size, size)
    assert ModuleValidator.validate(model, strict=False) == []


def test_loss_is_per_image_and_rewards_the_right_mask():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    right = torch.stack([1 - target, target], 1).float() * 20 - 10  # confident, correct logits
    wrong = -right
    loss = TASK.loss()
    assert float(loss(right, target)) < 0.05 < 1.5 < float(loss(wrong, target))
    loss.reduction = "none"
    assert loss(right, target).shape == (2,)


def test_dice_and_iou_against_hand_counts():
    truth = np.zeros((1, 4, 4), dtype=int)
    truth[0, :2, :2] = 1  # 4 lesion pixels
    pred = np.zeros((1, 4, 4), dtype=int)
    pred[0, :2, :3] = 1  # 6 predicted, 4 overlap
    m = TASK.metrics(TASK.demo_study(), truth, np.stack([1 - pred, pred], 1).astype(float))
    assert m["dice"] == pytest.approx(2 * 4 / 10) and m["iou"] == pytest.approx(4 / 6)
    assert m["pixel-accuracy"] == pytest.approx(14 / 16)


def test_unet_trains_with_dp(tmp_path):
    study = dataclasses.replace(TASK.demo_study(), privacy=PrivacyConfig(mode="local", epsilon=3.0))
    data = TASK.load_site(TASK.write_demo_sites(tmp_path, 3)[0], "h1", study)
    _, loss, epsilon = train_private(study, data, tmp_path / "ledgers")
    assert np.isfinite(loss) and 0 < epsilon < 3.0
