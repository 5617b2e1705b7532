"""Read, validate and split one site's images: a MedMNIST-style .npz, or a folder of PNG/JPEG with labels.csv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from shared.errors import DataError
from shared.partition import split_indices
from shared.tasks.base import SiteData
from shared.tasks.imaging.spec import ImagingSpec

MAX_ROTATION_DEG = 10.0


class ImageDataset(Dataset):
    """Images (N, C, H, W) in [0, 1] and class indices; training copies get random flips and small rotations."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool) -> None:
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        if self.augment:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            angle = math.radians(float(torch.empty(()).uniform_(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
            rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
            grid = F.affine_grid(rotation[None], [1, *image.shape], align_corners=False)
            image = F.grid_sample(image[None], grid, padding_mode="border", align_corners=False)[0]
        return image, self.labels[i]


def load_imaging_site(path: Path, site: str, spec: ImagingSpec, seed: int) -> SiteData:
    """The site's train/test images plus a local report; every problem names the site and the file."""
    split_seed = spec.split_seed if spec.split_seed >= 0 else seed
    if path.suffix.lower() == ".npz":
        train_x, train_y, test_x, test_y, report = _read_npz(path, site, spec, split_seed)
    elif path.is_dir():
        images, labels, report = _read_folder(path, site, spec)
        train_idx, test_idx = split_indices(labels, spec.test_fraction, split_seed)
        train_x, train_y, test_x, test_y = images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
    else:
        raise DataError(site, "is neither a .npz file nor a folder holding labels.csv", file=str(path))
    if len(np.unique(train_y)) < 2:
        raise DataError(site, "the training images hold a single class; a site needs at least two", file=str(path))
    report.update(
        {
            "train-images": len(train_y),
            "test-images": len(test_y),
            "class-counts": {
                c: int((np.concatenate([train_y, test_y]) == i).sum()) for i, c in enumerate(spec.class_names)
            },
        }
    )
    return SiteData(
        train=ImageDataset(to_image_tensor(train_x, spec), torch.from_numpy(train_y), spec.augment),
        test=ImageDataset(to_image_tensor(test_x, spec), torch.from_numpy(test_y), False),
        report=report,
    )


def _read_npz(path: Path, site: str, spec: ImagingSpec, split_seed: int):
    if not path.is_file():
        raise DataError(site, "file not found", file=str(path))
    try:
        archive = np.load(path)
        keys = set(archive.files)
    except (OSError, ValueError) as exc:
        raise DataError(site, f"cannot be read as .npz ({type(exc).__name__})", file=str(path)) from exc
    if not {"train_images", "train_labels"} <= keys:
        raise DataError(site, f"lacks train_images/train_labels (has: {', '.join(sorted(keys))})", file=str(path))
    parts = [p for p in ("train", "val") if f"{p}_images" in keys]
    x = np.concatenate([archive[f"{p}_images"] for p in parts])
    y = _labels(np.concatenate([archive[f"{p}_labels"] for p in parts]).reshape(-1), spec, site, str(path))
    if "test_images" in keys:
        test_x, test_y = archive["test_images"], _labels(archive["test_labels"].reshape(-1), spec, site, str(path))
    else:
        train_idx, test_idx = split_indices(y, spec.test_fraction, split_seed)
        x, y, test_x, test_y = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    for name, images in (("train_images", x), ("test_images", test_x)):
        if images.ndim not in (3, 4):
            raise DataError(site, f"{name} must be (N, H, W) or (N, H, W, C), got shape {images.shape}", file=str(path))
    return x, y, test_x, test_y, {"file": str(path), "format": "npz"}


def _read_folder(folder: Path, site: str, spec: ImagingSpec):
    index = folder / "labels.csv"
    if not index.is_file():
        raise DataError(site, "folder has no labels.csv (columns: file,label)", file=str(folder))
    try:
        table = pd.read_csv(index, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(site, f"cannot be read ({type(exc).__name__})", file=str(index)) from exc
    for column in ("file", "label"):
        if column not in table.columns:
            raise DataError(site, "column not found", file=str(index), column=column)
    if table.empty:
        raise DataError(site, "lists no images", file=str(index))
    missing = [f for f in table["file"] if not (folder / f).is_file()]
    if missing:
        raise DataError(site, f"{len(missing)} listed file(s) do not exist, first '{missing[0]}'", file=str(index))
    images, labels, skipped, modes = [], [], [], {}
    for file, label in zip(table["file"], table["label"], strict=True):
        try:
            with Image.open(folder / file) as img:
                img.load()
                bands = len(img.getbands())
                modes.setdefault(bands, file)
                if len(modes) > 1:
                    other = next(b for b in modes if b != bands)
                    raise DataError(
                        site,
                        f"mixed channel counts: '{file}' has {bands}, '{modes[other]}' has {other}",
                        file=str(folder / file),
                    )
                images.append(np.asarray(_fit(img, spec)))
                labels.append(label)
        except (UnidentifiedImageError, OSError) as exc:
            if spec.on_corrupt == "fail":
                raise DataError(site, "is not a readable image", file=str(folder / file)) from exc
            skipped.append(file)
    if not images:
        raise DataError(site, f"no readable image among {len(table)} listed", file=str(index))
    y = _labels(np.asarray(labels), spec, site, str(index))
    report = {"file": str(folder), "format": "folder", "skipped-unreadable": len(skipped)}
    if skipped:
        report["skipped-files"] = skipped[:20]
    return np.stack(images), y, report


def _fit(img: Image.Image, spec: ImagingSpec) -> Image.Image:
    img = img.convert("L" if spec.channels == 1 else "RGB")
    return img.resize((spec.image_size, spec.image_size), Image.BILINEAR)


def _labels(raw: np.ndarray, spec: ImagingSpec, site: str, file: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(spec.class_names)}
    names = np.array([str(v).strip() for v in raw])
    unknown = ~np.isin(names, list(index))
    if unknown.any():
        raise DataError(
            site,
            f"{int(unknown.sum())} label(s) outside the study's classes {spec.class_names}, "
            f"first at entry {int(np.argmax(unknown)) + 1}",
            file=file,
        )
    return np.array([index[n] for n in names], dtype=np.int64)


def to_image_tensor(images: np.ndarray, spec: ImagingSpec) -> torch.Tensor:
    """(N, H, W[, C]) uint8 or float -> (N, channels, size, size) float in [0, 1]."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    if x.max() > 1.0:
        x = x / 255.0
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != spec.channels:
        x = x.mean(1, keepdim=True) if spec.channels == 1 else x.expand(-1, 3, -1, -1)
    if x.shape[-1] != spec.image_size or x.shape[-2] != spec.image_size:
        x = F.interpolate(x, size=(spec.image_size, spec.image_size), mode="bilinear", align_corners=False)
    return x.contiguous()
