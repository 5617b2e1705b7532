"""Imaging task: a site's labelled images (.npz, or PNG/JPEG/DICOM + labels.csv), GroupNorm CNN or ResNet-18."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks.base import NewInputs, SiteData, Task
from shared.tasks.imaging import demo
from shared.tasks.imaging.data import infer_image_options, load_imaging_site, new_images
from shared.tasks.imaging.model import CLASSIFIERS
from shared.tasks.imaging.spec import data_spec, image_batch, model_spec


class ImagingTask(Task):
    """Medical images, one label per image (X-ray, ultrasound, ...)."""

    name = "imaging"

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`."""
        data_spec(study)
        model_spec(study, tuple(CLASSIFIERS), "cnn")

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """Classes, image size and channels of a .npz or an image folder."""
        return infer_image_options(path, site, "label", hints)

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read and split the site's images."""
        return load_imaging_site(path, site, data_spec(study), study.seed)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New images prepared as training images are, named by file (or by number in a .npz)."""
        if id_column is not None:
            raise ConfigError("id", "names a table's column; images are named by their file", source="predict")
        return NewInputs.every(*new_images(path, site, data_spec(study)), id_name="image")

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Images in [0, 1] of the study's size and channels."""
        return image_batch(data_spec(study), n)

    def class_names(self, study: StudyConfig) -> list[str]:
        """The study's image labels."""
        return data_spec(study).class_names

    def build_model(self, study: StudyConfig) -> nn.Module:
        """The study's network (compact CNN or ResNet-18-style) sized from the agreed channels and classes."""
        spec, model = data_spec(study), model_spec(study, tuple(CLASSIFIERS), "cnn")
        return CLASSIFIERS[model.name](spec.channels, len(spec.classes), model)

    def demo_study(self) -> StudyConfig:
        """Synthetic lesion study."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Synthetic lesion images, one .npz per hospital."""
        return demo.write_demo_sites(folder, n_sites)


TASK = ImagingTask()
