"""The imaging study schema every site shares: image size, channels, classes, DICOM window, bad-file policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from shared.config import StudyConfig, parse_section, raise_first
from shared.errors import ConfigError
from shared.tasks.size import SiteSize

ON_CORRUPT = ("skip", "fail")
# Every image is held in memory at this size (channels x size^2 floats): 4 MiB a grayscale image at 1024 pixels.
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class ImagingSpec(SiteSize):
    """`[data]` of an imaging study. A site's data is a MedMNIST-style .npz or a folder with an index CSV.

    `classes` are the image labels (classification) or the mask values' names, background first (segmentation).
    `dicom-window` = [centre, width] in the modality's units (e.g. [-600, 1500] for a CT lung window); empty means
    each DICOM file's own window, or its full range when it has none. `min-rows` counts usable images;
    `min-per-class` counts a label's training images, or for a mask class the training images it appears in.
    """

    classes: list[Any] = field(default_factory=list)
    image_size: int = 28
    channels: int = 1
    test_fraction: float = 0.2
    split_seed: int = -1
    on_corrupt: str = "skip"
    augment: bool = True
    dicom_window: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        problems = [
            (len(self.classes) < 2, "data.classes", "must list at least two labels agreed for the study"),
            (not 8 <= self.image_size <= MAX_IMAGE_SIZE, "data.image-size", f"must be in 8..{MAX_IMAGE_SIZE} pixels"),
            (self.channels not in (1, 3), "data.channels", "must be 1 (grayscale) or 3 (RGB)"),
            (not 0 < self.test_fraction < 1, "data.test-fraction", "must be in (0, 1)"),
            (self.on_corrupt not in ON_CORRUPT, "data.on-corrupt", f"must be one of {', '.join(ON_CORRUPT)}"),
            (
                bool(self.dicom_window) and (len(self.dicom_window) != 2 or float(self.dicom_window[1]) <= 0),
                "data.dicom-window",
                "must be [centre, width] with width > 0, or empty",
            ),
            *self.size_problems(),
        ]
        raise_first(problems)

    @property
    def class_names(self) -> list[str]:
        """Labels as strings; index i is class i."""
        return [str(c) for c in self.classes]

    @property
    def window(self) -> tuple[float, float] | None:
        """The DICOM window as (centre, width), or None for each file's own."""
        return (float(self.dicom_window[0]), float(self.dicom_window[1])) if self.dicom_window else None


@dataclass(frozen=True)
class ImagingModelSpec:
    """`[model]` of an imaging study: which network and its base channel width."""

    name: str = "cnn"
    width: int = 16

    def __post_init__(self) -> None:
        if self.width < 4:
            raise ConfigError("model.width", "must be at least 4")


def image_batch(spec: ImagingSpec, n: int) -> torch.Tensor:
    """`n` random images in [0, 1] of the study's channels and size."""
    return torch.rand(n, spec.channels, spec.image_size, spec.image_size)


def data_spec(study: StudyConfig) -> ImagingSpec:
    """Parse and validate the study's `[data]` section."""
    return parse_section(ImagingSpec, study.data, "data.")


def model_spec(study: StudyConfig, known: tuple[str, ...], default: str) -> ImagingModelSpec:
    """Parse and validate the study's `[model]` section against the task's known networks."""
    spec = parse_section(ImagingModelSpec, {"name": default, **study.model}, "model.")
    if spec.name not in known:
        raise ConfigError("model.name", f"must be one of {', '.join(known)}")
    return spec
