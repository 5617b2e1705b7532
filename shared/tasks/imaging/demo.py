"""Built-in synthetic imaging data: lesion-like bright blobs on smooth noise textures, generated on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.partition import partition

CLASSES = ["clear", "lesion"]  # lesion is the positive class


def synthetic_images(n: int, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (n, size, size), labels, and lesion masks: half hold a blob of random place, radius, contrast.

    The mask marks the blob's core (within 1.5 radii, where it stands clearly out of the texture).
    """
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.normal(0.0, 1.0, (n, 1, size, size)).astype(np.float32))
    texture = F.avg_pool2d(noise, 5, stride=1, padding=2)[:, 0].numpy()  # smooth tissue-like background
    texture = 0.35 + 0.25 * texture / np.abs(texture).max()
    labels = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(labels)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in np.flatnonzero(labels):
        cy, cx = rng.uniform(6, size - 6, 2)
        radius, contrast = rng.uniform(2.0, 4.0), rng.uniform(0.25, 0.45)
        distance2 = (yy - cy) ** 2 + (xx - cx) ** 2
        texture[i] += contrast * np.exp(-distance2 / (2 * radius**2))
        masks[i] = distance2 <= (1.5 * radius) ** 2
    return (np.clip(texture, 0, 1) * 255).astype(np.uint8), labels, masks


def write_demo_sites(
    folder: Path, n_sites: int = 3, seed: int = 2, n_images: int = 600, target: str = "label"
) -> list[Path]:
    """One MedMNIST-style .npz per hospital (Dirichlet label skew), with labels or masks, written atomically."""
    images, labels, masks = synthetic_images(n_images, seed=seed)
    parts = partition(labels, n_sites, "dirichlet", seed=seed, alpha=1.0, min_rows=40)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(parts, start=1):
        path = folder / f"hospital-{i}.npz"
        if target == "label":
            targets = {"train_labels": np.array(CLASSES)[labels[rows]][:, None]}
        else:
            targets = {"train_masks": masks[rows]}
        arrays = {"train_images": images[rows], **targets}
        paths.append(atomic_write(path, lambda tmp, arrays=arrays: np.savez_compressed(tmp, **arrays)))
    return paths


def demo_study() -> StudyConfig:
    """The built-in imaging study (`medfed-sim --task imaging`)."""
    return StudyConfig.from_dict(
        {
            "name": "synthetic-lesions-demo",
            "task": "imaging",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 5, "min-sites": 2},
            "train": {"local-epochs": 1, "batch-size": 32, "lr": 0.005},
            "model": {"name": "cnn"},
            "data": {"classes": CLASSES, "image-size": 28, "channels": 1},
        }
    )
