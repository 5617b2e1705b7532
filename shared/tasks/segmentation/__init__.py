"""Segmentation task: a site's images with per-pixel masks (.npz, or image files + masks.csv), a U-Net, Dice/IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.assessment import bootstrap_ci
from shared.config import StudyConfig
from shared.metrics import segmentation_metrics
from shared.tasks.base import SiteData, Task
from shared.tasks.imaging.data import infer_image_options, load_imaging_site
from shared.tasks.imaging.spec import data_spec, image_batch, model_spec
from shared.tasks.segmentation import demo
from shared.tasks.segmentation.loss import DiceCrossEntropyLoss
from shared.tasks.segmentation.model import SEGMENTERS
from shared.training import predict


class SegmentationTask(Task):
    """Images with a mask each (lesions, nodules, organs); `data.classes` names the mask values, background first."""

    name = "segmentation"
    headline = ("dice", "iou")
    classifies = False

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`."""
        data_spec(study)
        model_spec(study, tuple(SEGMENTERS), "unet")

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """Classes, image size and channels of a .npz or an image folder."""
        return infer_image_options(path, site, "mask", hints)

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, check against their masks, and split the site's images."""
        return load_imaging_site(path, site, data_spec(study), study.seed, target="mask")

    def build_model(self, study: StudyConfig) -> nn.Module:
        """The U-Net sized from the agreed channels and mask classes."""
        spec, model = data_spec(study), model_spec(study, tuple(SEGMENTERS), "unet")
        return SEGMENTERS[model.name](spec.channels, len(spec.classes), model)

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Images in [0, 1] of the study's size and channels."""
        return image_batch(data_spec(study), n)

    def class_names(self, study: StudyConfig) -> list[str]:
        """The mask's classes (index 0 is the background)."""
        return data_spec(study).class_names

    def output_meaning(self, study: StudyConfig) -> str:
        """Per-pixel class logits."""
        return "per-pixel class logits, batch x class x height x width (softmax over the class axis)"

    def target_bytes(self, study: StudyConfig) -> int:
        """A mask: an int64 class index per pixel at the study's size."""
        return 8 * data_spec(study).image_size ** 2

    def loss(self, study: StudyConfig | None = None) -> nn.Module:
        """Cross-entropy plus soft Dice, per image."""
        return DiceCrossEntropyLoss()

    def metrics(
        self, study: StudyConfig, y_true: np.ndarray, scores: np.ndarray, threshold: float | None = None
    ) -> dict[str, float]:
        """Dice, IoU (mean over foreground classes, and per class if several) and pixel accuracy."""
        return segmentation_metrics(y_true, scores, data_spec(study).class_names)

    def assess(
        self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device, threshold: float | None = None
    ) -> dict[str, Any]:
        """Bootstrap CIs of Dice and IoU over resampled held-out images (pixel scores have no patient-level curve)."""
        _, y_true, probs = predict(model, data.test, self.loss(study), device)
        return bootstrap_ci(y_true, probs, lambda y, p: self.metrics(study, y, p), self.headline, study.seed)

    def demo_study(self) -> StudyConfig:
        """Synthetic lesion segmentation study."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Synthetic lesion images with masks, one .npz per hospital."""
        return demo.write_demo_sites(folder, n_sites)


TASK = SegmentationTask()
