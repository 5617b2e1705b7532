"""Imaging task: CNN shapes, Opacus compatibility, DP training of the CNN, and the synthetic demo."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from shared.config import PrivacyConfig
from shared.privacy.site import SitePrivacy, dp_compatible, grad_sample_mode
from shared.tasks import build_model, get_task
from shared.tasks.imaging.demo import synthetic_images, write_demo_sites
from shared.training import make_loader, make_optimizer, train_epochs

TASK = get_task("imaging")


def test_cnn_shapes_and_opacus_validation():
    study = TASK.demo_study()
    model = build_model(study)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert dp_compatible(model) is model  # nothing to fix
    assert grad_sample_mode(model, "auto", 32) == "ew"


def test_cnn_trains_with_dp(tmp_path):
    study = dataclasses.replace(TASK.demo_study(), privacy=PrivacyConfig(mode="local", epsilon=3.0))
    data = TASK.load_site(write_demo_sites(tmp_path, 3)[0], "h1", study)
    model = build_model(study)
    site = SitePrivacy(study, "h1", tmp_path / "ledgers", float("inf"), len(data.train))
    site.check_round()
    private, optimizer, loader, loss = site.make_private(
        model, make_optimizer(model, study.train), make_loader(data.train, 32, 0), TASK.loss()
    )
    assert np.isfinite(
        train_epochs(private, loader, loss, optimizer, 1, torch.device("cpu"), 0.0, site.empty_batch_step())
    )
    assert 0 < site.commit(1) < 3.0


def test_synthetic_lesions_are_balanced_and_visible():
    images, labels = synthetic_images(200, seed=1)
    assert images.shape == (200, 28, 28) and labels.mean() == 0.5
    assert images[labels == 1].max(axis=(1, 2)).mean() > images[labels == 0].max(axis=(1, 2)).mean() + 20
