"""Built-in segmentation study: the synthetic lesion images with their lesion masks."""

from __future__ import annotations

from pathlib import Path

from shared.config import StudyConfig
from shared.tasks.imaging import demo as imaging_demo

CLASSES = ["background", "lesion"]


def write_demo_sites(folder: Path, n_sites: int = 3, seed: int = 2) -> list[Path]:
    """One .npz of images and masks per hospital."""
    return imaging_demo.write_demo_sites(folder, n_sites, seed=seed, target="mask")


def demo_study() -> StudyConfig:
    """The built-in segmentation study (`medfed-sim --task segmentation`)."""
    return StudyConfig.from_dict(
        {
            "name": "synthetic-lesion-segmentation-demo",
            "task": "segmentation",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 5, "min-sites": 2},
            "train": {"local-epochs": 1, "batch-size": 16, "lr": 0.003},
            "model": {"name": "unet", "width": 8},
            "data": {"classes": CLASSES, "image-size": 28, "channels": 1},
        }
    )
