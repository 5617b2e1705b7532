"""Read, validate and split one site's images with a label or a mask each: a MedMNIST-style .npz or a folder + CSV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared.errors import DataError
from shared.partition import split_indices
from shared.tasks.base import SiteData
from shared.tasks.imaging.files import (
    OUTSIDE,
    UnreadableImage,
    inside,
    native_channels,
    read_image,
    read_mask,
    resize,
    resize_mask,
)
from shared.tasks.imaging.spec import ImagingSpec
from shared.tasks.labels import label_indices
from shared.tasks.size import check_site_size, validation_split

MAX_ROTATION_DEG = 10.0
TARGETS = {"label": "labels.csv", "mask": "masks.csv"}  # what each image comes with -> the folder's index file


class ImageDataset(Dataset):
    """Images (N, C, H, W) in [0, 1] with class indices (N,) or masks (N, H, W).

    Training copies get a random horizontal flip and a small rotation; a mask gets the same geometry (nearest
    sampling, so it keeps its class values).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, augment: bool) -> None:
        self.images, self.targets, self.augment = images, targets, augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.images[i], self.targets[i]
        if not self.augment:
            return image, target
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
            target = target.flip(-1) if target.ndim else target
        angle = math.radians(float(torch.empty(()).uniform_(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
        rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
        grid = F.affine_grid(rotation[None], [1, *image.shape], align_corners=False)
        image = F.grid_sample(image[None], grid, padding_mode="border", align_corners=False)[0]
        if target.ndim:
            mask = target[None, None].float()
            target = F.grid_sample(mask, grid, mode="nearest", padding_mode="border", align_corners=False)[0, 0].long()
        return image, target


def load_imaging_site(path: Path, site: str, spec: ImagingSpec, seed: int, target: str = "label") -> SiteData:
    """The site's train/test images and targets plus a local report; every problem names the site and the file."""
    split_seed = spec.split_seed if spec.split_seed >= 0 else seed
    if path.suffix.lower() == ".npz":
        native, targets, train_idx, test_idx, report = _read_npz(path, site, spec, target, split_seed)

        def images(rows: np.ndarray) -> torch.Tensor:  # each split converted to the study's size on its own
            return to_image_tensor(native[rows], spec)
    elif path.is_dir():
        read, targets, report = _read_folder(path, site, spec, target)
        train_idx, test_idx = split_indices(_strata(targets), spec.test_fraction, split_seed)

        def images(rows: np.ndarray) -> torch.Tensor:
            return read[rows]
    else:
        index = TARGETS[target]
        raise DataError(site, f"is neither a .npz file nor a folder holding {index}", file=str(path))
    train_y = targets[train_idx]
    check_site_size(site, str(path), len(targets), train_y, spec.class_names, spec, unit="images")
    if target == "label":
        report["class-counts"] = {c: int((targets == i).sum()) for i, c in enumerate(spec.class_names)}
    else:
        report["pixel-share"] = {c: round(float((targets == i).mean()), 4) for i, c in enumerate(spec.class_names)}
    fit, val = validation_split(train_y, len(spec.class_names), spec.validation_fraction, split_seed)
    del train_y
    report.update({"train-images": len(fit), "validation-images": len(val), "test-images": len(test_idx)})
    # Each split is gathered once, so loading holds at most two copies of the images at the study's size (a .npz's,
    # converted split by split from the file's own size, about one).
    fit, val = train_idx[fit], train_idx[val]
    return SiteData(
        train=ImageDataset(images(fit), torch.from_numpy(targets[fit]), spec.augment),
        test=ImageDataset(images(test_idx), torch.from_numpy(targets[test_idx]), False),
        report=report,
        val=ImageDataset(images(val), torch.from_numpy(targets[val]), False) if len(val) else None,
    )


def new_images(path: Path, site: str, spec: ImagingSpec) -> tuple[list[str], torch.Tensor]:
    """New images for prediction, read, windowed (DICOM) and resized as training images are: a .npz's `images`
    (numbered from 1) or, in a MedMNIST-style file, its train, val and test images (`test-1`, ...), or every file of a
    folder but its .csv index and hidden files, by name."""
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise DataError(site, "file not found", file=str(path))
        try:
            archive = np.load(path)
            keys = ["images"] if "images" in archive.files else [f"{p}_images" for p in ("train", "val", "test")]
            parts = {k.removesuffix("images").rstrip("_"): archive[k] for k in keys if k in archive.files}
        except (OSError, ValueError) as exc:
            raise DataError(site, f"cannot be read as .npz ({type(exc).__name__})", file=str(path)) from exc
        if not parts or any(images.ndim not in (3, 4) for images in parts.values()):
            raise DataError(site, "holds no `images` (or `train_images`...) array of (N, H, W[, C])", file=str(path))
        ids = [f"{name}-{i + 1}" if name else str(i + 1) for name, images in parts.items() for i in range(len(images))]
        return ids, torch.cat([to_image_tensor(images, spec) for images in parts.values()])
    if not path.is_dir():
        raise DataError(site, "is neither a .npz file nor a folder of images", file=str(path))
    files = new_image_files(path)
    if not files:
        raise DataError(site, "folder holds no image file", file=str(path))
    resized = []
    for file in files:
        try:
            resized.append(resize(read_image(file, spec.window), spec.image_size, spec.channels))
        except UnreadableImage as exc:
            raise DataError(site, f"is not a readable image: {exc}", file=str(file)) from exc
    return [f.name for f in files], torch.from_numpy(np.stack(resized))


def new_image_files(folder: Path) -> list[Path]:
    """The files of a folder of new images that prediction reads: every one but a .csv index and hidden files (a
    copy from a Mac brings `.DS_Store`), by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".csv" and not p.name.startswith(".")
    )


def _strata(targets: np.ndarray) -> np.ndarray:
    """Labels stratify the split as they are; masks by whether they hold any foreground."""
    return targets if targets.ndim == 1 else (targets.reshape(len(targets), -1).max(1) > 0).astype(np.int64)


def image_set_task(path: Path) -> str | None:
    """The task a MedMNIST-style image set (an .npz, or a folder of them, one per site) is for, from its arrays' names:
    segmentation when it holds `train_masks`, else imaging; None for anything else."""
    files = [path] if path.suffix == ".npz" else sorted(path.glob("*.npz")) if path.is_dir() else []
    if not files:
        return None
    try:
        with np.load(files[0]) as archive:
            keys = set(archive.files)
    except (OSError, ValueError):
        return "imaging"  # its loader names what is wrong with the file
    return "segmentation" if "train_masks" in keys else "imaging"


def _read_npz(path: Path, site: str, spec: ImagingSpec, target: str, split_seed: int):
    if not path.is_file():
        raise DataError(site, "file not found", file=str(path))
    try:
        archive = np.load(path)
        keys = set(archive.files)
    except (OSError, ValueError) as exc:
        raise DataError(site, f"cannot be read as .npz ({type(exc).__name__})", file=str(path)) from exc
    key = f"{target}s"
    if not {"train_images", f"train_{key}"} <= keys:
        raise DataError(site, f"lacks train_images/train_{key} (has: {', '.join(sorted(keys))})", file=str(path))

    def part(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images = np.concatenate([archive[f"{p}_images"] for p in names])
        raw = np.concatenate([archive[f"{p}_{key}"] for p in names])
        if images.ndim not in (3, 4):
            raise DataError(site, f"images must be (N, H, W) or (N, H, W, C), got {images.shape}", file=str(path))
        if target == "label":
            return images, label_indices(raw.reshape(-1), spec.class_names, site, str(path))
        if raw.shape != images.shape[:3]:
            raise DataError(
                site, f"{names[0]}_masks have shape {raw.shape}, their images {images.shape[:3]}", file=str(path)
            )
        return images, _mask_classes(raw, spec, site, str(path))

    x, y = part([p for p in ("train", "val") if f"{p}_images" in keys])
    if "test_images" in keys:  # the file's own split: its test images after the others
        test_x, test_y = part(["test"])
        train_idx, test_idx = np.arange(len(y)), np.arange(len(y), len(y) + len(test_y))
        x, y = np.concatenate([x, test_x]), np.concatenate([y, test_y])
    else:
        train_idx, test_idx = split_indices(_strata(y), spec.test_fraction, split_seed)
    if target == "mask":
        masks = np.empty((len(y), spec.image_size, spec.image_size), np.int64)  # filled in place: held once
        for i, mask in enumerate(y):
            masks[i] = resize_mask(mask, spec.image_size)
        y = masks
    return x, y, train_idx, test_idx, {"file": str(path), "format": "npz"}


def _read_folder(folder: Path, site: str, spec: ImagingSpec, target: str):
    index = folder / TARGETS[target]
    if not index.is_file():
        raise DataError(site, f"folder has no {index.name} (columns: file,{target})", file=str(folder))
    try:
        table = pd.read_csv(index, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(site, f"cannot be read ({type(exc).__name__})", file=str(index)) from exc
    for column in ("file", target):
        if column not in table.columns:
            raise DataError(site, "column not found", file=str(index), column=column)
    if table.empty:
        raise DataError(site, "lists no images", file=str(index))
    listed = table["file"].tolist() + (table["mask"].tolist() if target == "mask" else [])
    # The index is the site's own file, but whatever it names must still be read from the site's data folder only.
    outside = [f for f in listed if inside(folder.resolve(), f) is None]
    if outside:
        raise DataError(site, f"{len(outside)} listed file(s) {OUTSIDE}, first '{outside[0]}'", file=str(index))
    missing = [f for f in listed if not (folder / f).is_file()]
    if missing:
        raise DataError(site, f"{len(missing)} listed file(s) do not exist, first '{missing[0]}'", file=str(index))
    # Filled in place, so the images are held once at the study's size (pages past the last readable one stay unused).
    shape = (len(table), spec.image_size, spec.image_size)
    images = np.empty((shape[0], spec.channels, *shape[1:]), np.float32)
    masks = np.empty(shape, np.int64) if target == "mask" else None
    labels, skipped, first_with, kept = [], [], {}, 0
    for file, value in zip(table["file"], table[target], strict=True):
        try:
            image = read_image(folder / file, spec.window)
            mask = read_mask(folder / value) if target == "mask" else None
        except UnreadableImage as exc:
            if spec.on_corrupt == "fail":
                raise DataError(site, f"is not a readable image: {exc}", file=str(folder / file)) from exc
            skipped.append(file)
            continue
        bands = native_channels(image)
        first_with.setdefault(bands, file)
        if len(first_with) > 1:
            other = next(b for b in first_with if b != bands)
            raise DataError(
                site,
                f"mixed channel counts: '{file}' has {bands}, '{first_with[other]}' has {other}",
                file=str(folder / file),
            )
        if mask is not None and mask.shape != image.shape[:2]:
            raise DataError(
                site,
                f"mask is {mask.shape[1]}x{mask.shape[0]} pixels, its image '{file}' {image.shape[1]}x{image.shape[0]}",
                file=str(folder / value),
            )
        images[kept] = resize(image, spec.image_size, spec.channels)
        if mask is None:
            labels.append(value)
        else:
            masks[kept] = resize_mask(_mask_classes(mask, spec, site, value), spec.image_size)
        kept += 1
    if not kept:
        raise DataError(site, f"no readable image among {len(table)} listed", file=str(index))
    y = label_indices(np.asarray(labels), spec.class_names, site, str(index)) if masks is None else masks[:kept]
    report = {"file": str(folder), "format": "folder", "skipped-unreadable": len(skipped)}
    if skipped:
        report["skipped-files"] = skipped[:20]
    return torch.from_numpy(images[:kept]), y, report


def _mask_classes(mask: np.ndarray, spec: ImagingSpec, site: str, file: str) -> np.ndarray:
    """Mask values as class indices: binary studies take any non-zero value (1, 255) as foreground."""
    mask = np.asarray(mask).astype(np.int64)
    n = len(spec.classes)
    if n == 2:
        return (mask != 0).astype(np.int64)
    bad = np.setdiff1d(np.unique(mask), np.arange(n))
    if len(bad):
        raise DataError(site, f"mask values {bad[:5].tolist()} are outside 0..{n - 1} ({spec.class_names})", file=file)
    return mask


def to_image_tensor(images: np.ndarray, spec: ImagingSpec) -> torch.Tensor:
    """(N, H, W[, C]) integer or [0, 1] float -> (N, channels, size, size) float in [0, 1]."""
    images = np.asarray(images)
    scale = float(np.iinfo(images.dtype).max) if np.issubdtype(images.dtype, np.integer) else 1.0
    x = torch.from_numpy(images.astype(np.float32) / scale)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != spec.channels:
        x = x.mean(1, keepdim=True) if spec.channels == 1 else x[:, :1].expand(-1, 3, -1, -1)
    if x.shape[-2:] != (spec.image_size, spec.image_size):
        x = F.interpolate(x, size=(spec.image_size, spec.image_size), mode="bilinear", antialias=True)
    return x.contiguous().clamp_(0, 1)  # in place: no second copy at the study's size


def infer_image_options(path: Path, site: str, target: str, hints: dict) -> dict:
    """Classes (and, from a .npz, image size and channels) of a site's image set; `hints` win."""
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise DataError(site, "file not found", file=str(path))
        with np.load(path) as archive:
            if f"train_{target}s" not in archive.files:
                raise DataError(site, f"lacks train_{target}s", file=str(path))
            shape = archive["train_images"].shape
            values = np.unique(archive[f"train_{target}s"]).tolist()
        inferred = {"image-size": int(shape[1]), "channels": 3 if len(shape) == 4 and shape[3] == 3 else 1}
    else:
        index = path / TARGETS[target]
        if not index.is_file():
            raise DataError(site, f"folder has no {index.name} (columns: file,{target})", file=str(path))
        column = pd.read_csv(index, dtype=str, keep_default_na=False).get(target)
        if column is None:
            raise DataError(site, "column not found", file=str(index), column=target)
        values = sorted(set(column)) if target == "label" else [0, 1]  # mask values are read with the images
        inferred = {}
    if target == "label":
        inferred["classes"] = values
    else:
        inferred["classes"] = ["background", "foreground"] if len(values) <= 2 else [f"class-{v}" for v in values]
    return {**inferred, **hints}
