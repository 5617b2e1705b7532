"""Read one image or mask file (PNG/JPEG via Pillow, DICOM via pydicom) into a float array at its native size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIXES = (".dcm", ".dicom")


OUTSIDE = "point outside the site's data folder"  # a path that resolves out of it (`..`, absolute, a link)


def inside(folder: Path, relative: str) -> Path | None:
    """`relative` resolved under the site's data folder `folder` (resolved), or None when it leaves it: `..`, an
    absolute path, or a link out of the folder (resolving follows links)."""
    target = (folder / relative.strip()).resolve()
    return target if target.is_relative_to(folder) else None


class UnreadableImage(Exception):
    """The file is not an image this loader can decode; the caller decides whether that is fatal."""


def read_image(path: Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1]; DICOM gets its modality rescale, then `window` or the file's own."""
    if path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_preamble(path):
        return _read_dicom(path, window)
    try:
        with _decoded(path) as img:
            if img.mode in ("I", "I;16", "F"):  # 16-bit / float grayscale PNG and TIFF keep their depth
                pixels = np.asarray(img, dtype=np.float32)
                return _min_max(pixels)
            return np.asarray(img.convert("RGB" if len(img.getbands()) >= 3 else "L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(type(exc).__name__) from exc


def read_mask(path: Path) -> np.ndarray:
    """(H, W) integer mask exactly as stored (no interpolation), from an image file or a DICOM."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _dicom_dataset(path).pixel_array.astype(np.int64)
    try:
        with _decoded(path) as img:
            return np.asarray(img.convert("L") if len(img.getbands()) > 1 else img).astype(np.int64)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(type(exc).__name__) from exc


def resize(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(H, W[, C]) float -> (channels, size, size) float32: grey averaged from RGB or copied into RGB."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    if x.shape[0] != channels:
        x = x.mean(0, keepdim=True) if channels == 1 else x[:1].expand(3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp(0, 1).numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) class indices -> (size, size), nearest neighbour so no new class values appear."""
    if mask.shape == (size, size):
        return mask
    x = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(x, size=(size, size), mode="nearest")[0, 0].numpy().astype(np.int64)


def native_channels(image: np.ndarray) -> int:
    """1 for grayscale, 3 for colour."""
    return 1 if image.ndim == 2 else image.shape[2]


def _decoded(path: Path) -> Image.Image:
    """The image, decoded; one with more pixels than Pillow's limit (a decompression bomb) is refused undecoded."""
    with warnings.catch_warnings():
        # Pillow only warns up to twice its limit and would then decode it anyway: refuse that too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnreadableImage(
                f"a decompression bomb: more pixels than the {Image.MAX_IMAGE_PIXELS} Pillow decodes"
            ) from exc
    try:
        img.load()
    except BaseException:
        img.close()
        raise
    return img


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_dataset(path: Path):
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as exc:
        raise UnreadableImage("a DICOM file, and pydicom is not installed: pip install 'medfed[dicom]'") from exc
    try:
        ds = pydicom.dcmread(path)
        ds.pixel_array  # noqa: B018 - decode now so a broken pixel stream is reported for this file
    except (InvalidDicomError, AttributeError, ValueError, OSError, RuntimeError) as exc:
        raise UnreadableImage(f"unreadable DICOM ({type(exc).__name__})") from exc
    return ds


def _read_dicom(path: Path, window: tuple[float, float] | None) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _dicom_dataset(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise UnreadableImage(f"a {frames}-frame DICOM; imaging expects one 2-D image per file")
    pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)  # stored values -> e.g. Hounsfield units
    if window is not None:
        centre, width = window
        pixels = np.clip((pixels - (centre - width / 2)) / width, 0.0, 1.0)
    else:
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            pixels = apply_voi_lut(pixels, ds).astype(np.float32)
        pixels = _min_max(pixels)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":  # MONOCHROME1 shows low values as white
        pixels = 1.0 - pixels
    return pixels


def _min_max(pixels: np.ndarray) -> np.ndarray:
    lo, hi = float(pixels.min()), float(pixels.max())
    return (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels, dtype=np.float32)
