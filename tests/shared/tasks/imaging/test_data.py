"""Imaging loaders (MedMNIST .npz, folder + labels.csv) and a clear error, naming site and file, per bad input."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from shared.errors import DataError
from shared.tasks.imaging.data import load_imaging_site
from shared.tasks.imaging.spec import ImagingSpec

SPEC = ImagingSpec(classes=[0, 1], image_size=16, channels=1, augment=False, min_rows=4)  # the folders are small


def medmnist(tmp_path, n=40):
    rng = np.random.default_rng(0)
    path = tmp_path / "site.npz"
    np.savez(
        path,
        **{f"{p}_images": rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for p in ("train", "val", "test")},
        **{f"{p}_labels": (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8) for p in ("train", "val", "test")},
    )
    return path


def image_folder(tmp_path, modes=("L",) * 12, labels=None, extra_rows=()):
    folder = tmp_path / "images"
    folder.mkdir(parents=True)
    rows = ["file,label"]
    for i, mode in enumerate(modes):
        name = f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.new(mode, (32, 24), color=(i * 20) if mode == "L" else (i * 20, 0, 0)).save(folder / name)
        rows.append(f"{name},{labels[i] if labels else i % 2}")
    rows.extend(extra_rows)
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_medmnist_npz_uses_its_official_test_split(tmp_path):
    data = load_imaging_site(medmnist(tmp_path), "h1", SPEC, seed=0)
    # train + val for training (a fifth kept to place the decision threshold, never augmented), test held out
    assert (len(data.train), len(data.val), len(data.test)) == (64, 16, 40) and not data.val.augment
    x, y = data.train[0]
    assert x.shape == (1, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1 and y.dtype == torch.int64


def test_folder_of_png_and_jpeg_is_resized_and_split(tmp_path):
    data = load_imaging_site(image_folder(tmp_path), "h1", SPEC, seed=0)
    assert len(data.train) + len(data.test) == 12
    assert data.test[0][0].shape == (1, 16, 16)
    rgb = dataclasses.replace(SPEC, channels=3)
    assert load_imaging_site(image_folder(tmp_path / "b", modes=("RGB",) * 12), "h1", rgb, 0).train[0][0].shape == (
        3,
        16,
        16,
    )


def test_augmentation_only_changes_training_images(tmp_path):
    spec = dataclasses.replace(SPEC, augment=True)
    data = load_imaging_site(medmnist(tmp_path), "h1", spec, seed=0)
    torch.manual_seed(0)
    assert any(not torch.equal(data.train[0][0], data.train[0][0]) for _ in range(5))
    assert torch.equal(data.test[0][0], data.test[0][0])


def expect(path, match, spec=SPEC):
    with pytest.raises(DataError) as err:
        load_imaging_site(path, "hospital-x", spec, seed=0)
    assert "hospital-x" in str(err.value) and match in str(err.value)
    return str(err.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "no labels.csv")


def test_labels_csv_naming_missing_files(tmp_path):
    message = expect(image_folder(tmp_path, extra_rows=["ghost.png,1"]), "do not exist")
    assert "ghost.png" in message and "labels.csv" in message


@pytest.mark.parametrize("entry", ["../secret.png", "/etc/hosts", "link.png"])
def test_labels_csv_naming_a_file_outside_the_folder_is_refused_before_it_is_read(tmp_path, entry):
    (tmp_path / "secret.png").write_bytes(b"not read")
    folder = image_folder(tmp_path, extra_rows=[f"{entry},1"])
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    message = expect(folder, "1 listed file(s) point outside the site's data folder")
    assert f"first '{entry}'" in message and "labels.csv" in message


def test_mixed_channel_counts(tmp_path):
    message = expect(image_folder(tmp_path, modes=("L",) * 5 + ("RGB",) * 5), "mixed channel counts")
    assert "img5" in message


def test_unknown_label(tmp_path):
    expect(image_folder(tmp_path, labels=[0, 1] * 5 + [7, 1]), "outside the study's classes")


def test_non_image_file_is_skipped_and_counted_or_fatal(tmp_path):
    folder = image_folder(tmp_path, extra_rows=["notes.txt,1"])
    (folder / "notes.txt").write_text("not an image")
    data = load_imaging_site(folder, "hospital-x", SPEC, seed=0)
    assert data.report["skipped-unreadable"] == 1 and data.report["skipped-files"] == ["notes.txt"]
    message = expect(folder, "not a readable image", dataclasses.replace(SPEC, on_corrupt="fail"))
    assert "notes.txt" in message


def test_neither_npz_nor_folder(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"x")
    expect(path, "neither a .npz file nor a folder")


def mask_folder(tmp_path, n=10, mask_size=(32, 24), mask_value=255):
    folder = tmp_path / "seg"
    folder.mkdir(parents=True)
    rows = ["file,mask"]
    for i in range(n):
        Image.new("L", (32, 24), color=40).save(folder / f"img{i}.png")
        mask = np.zeros(mask_size[::-1], dtype=np.uint8)
        mask[4:12, 8:20] = mask_value if i % 2 else 0
        Image.fromarray(mask).save(folder / f"img{i}_mask.png")
        rows.append(f"img{i}.png,img{i}_mask.png")
    (folder / "masks.csv").write_text("\n".join(rows) + "\n")
    return folder


SEG = ImagingSpec(classes=["background", "lesion"], image_size=16, channels=1, augment=False, min_rows=4)


def test_folder_with_masks_resizes_masks_to_class_indices(tmp_path):
    data = load_imaging_site(mask_folder(tmp_path), "h1", SEG, seed=0, target="mask")
    masks = torch.stack([data.train[i][1] for i in range(len(data.train))])
    assert masks.shape[1:] == (16, 16) and set(masks.unique().tolist()) == {0, 1}  # 255 -> 1, nearest resize
    assert 0 < data.report["pixel-share"]["lesion"] < 0.5


def test_npz_with_masks_and_augmentation_moves_image_and_mask_together(tmp_path):
    path = tmp_path / "seg.npz"
    images = np.zeros((20, 16, 16), dtype=np.uint8)
    masks = np.zeros((20, 16, 16), dtype=np.uint8)
    images[:, 2:6, 1:4], masks[:, 2:6, 1:4] = 255, 1  # a lesion near the left edge
    np.savez(path, train_images=images, train_masks=masks)
    data = load_imaging_site(path, "h1", dataclasses.replace(SEG, augment=True), seed=0, target="mask")
    torch.manual_seed(0)
    for _ in range(10):
        image, mask = data.train[0]
        assert float(image[0][mask == 1].mean()) > 0.5 > float(image[0][mask == 0].mean())


def test_mask_whose_size_differs_from_its_image(tmp_path):
    message = expect_mask(mask_folder(tmp_path, mask_size=(30, 24)), "mask is 30x24 pixels")
    assert "img0_mask.png" in message and "img0.png" in message


def test_mask_values_outside_the_classes(tmp_path):
    spec = dataclasses.replace(SEG, classes=["background", "nodule", "vessel"])
    message = expect_mask(mask_folder(tmp_path, mask_value=7), "mask values [7]", spec)
    assert "img1_mask.png" in message


def test_npz_masks_of_another_shape(tmp_path):
    path = tmp_path / "seg.npz"
    np.savez(path, train_images=np.zeros((4, 16, 16)), train_masks=np.zeros((4, 8, 8)))
    expect_mask(path, "train_masks have shape (4, 8, 8)")


def expect_mask(path, match, spec=SEG):
    with pytest.raises(DataError) as err:
        load_imaging_site(path, "hospital-x", spec, seed=0, target="mask")
    assert "hospital-x" in str(err.value) and match in str(err.value)
    return str(err.value)


def write_dicom(path, pixels, intercept=-1024.0, photometric="MONOCHROME2", window=None):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def dicom_folder(tmp_path, **kwargs):
    folder = tmp_path / "dicom"
    folder.mkdir()
    ramp = np.tile(np.arange(0, 2000, 125, dtype=np.uint16), (16, 1))  # 16 columns: HU -1024 .. 851
    rows = ["file,label"]
    for i in range(8):
        write_dicom(folder / f"scan{i}.dcm", ramp, **kwargs)
        rows.append(f"scan{i}.dcm,{i % 2}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_dicom_folder_rescaled_and_normalised(tmp_path):
    data = load_imaging_site(dicom_folder(tmp_path), "h1", SPEC, seed=0)
    row = data.train[0][0][0, 8]
    assert float(row[0]) == pytest.approx(0.0, abs=1e-3) and float(row[-1]) == pytest.approx(1.0, abs=1e-3)
    assert (row[1:] >= row[:-1]).all()  # full range, order kept


def test_dicom_study_window_clips_to_the_window(tmp_path):
    spec = dataclasses.replace(SPEC, dicom_window=[0.0, 200.0])  # HU -100 .. 100
    row = load_imaging_site(dicom_folder(tmp_path), "h1", spec, seed=0).train[0][0][0, 8].numpy()
    hu = np.arange(0, 2000, 125) - 1024
    assert (row[hu < -200] == 0).all() and (row[hu > 200] == 1).all()


def test_dicom_monochrome1_is_inverted(tmp_path):
    row = load_imaging_site(dicom_folder(tmp_path, photometric="MONOCHROME1"), "h1", SPEC, seed=0).train[0][0][0, 8]
    assert float(row[0]) == pytest.approx(1.0, abs=1e-3) and float(row[-1]) == pytest.approx(0.0, abs=1e-3)


def test_corrupt_dicom_is_named(tmp_path):
    folder = dicom_folder(tmp_path)
    (folder / "scan3.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    data = load_imaging_site(folder, "hospital-x", SPEC, seed=0)
    assert data.report["skipped-files"] == ["scan3.dcm"]
    message = expect(folder, "unreadable DICOM", dataclasses.replace(SPEC, on_corrupt="fail"))
    assert "scan3.dcm" in message


def blank_npz(tmp_path, n: int, marked: int, target: str):
    """A .npz of `n` blank images, the first `marked` of them labelled 1 or holding a lesion in their mask."""
    path = tmp_path / f"{target}s.npz"
    marks = np.arange(n) < marked
    targets = np.zeros((n, 16, 16), np.uint8) if target == "mask" else marks.astype(np.uint8)
    if target == "mask":
        targets[marks, 2:6, 2:6] = 1
    np.savez(path, train_images=np.zeros((n, 16, 16), np.uint8), **{f"train_{target}s": targets})
    return path


SHORT = "class(es) ['{name}'] {held} fewer training images than data.min-per-class = {n}; a site needs two classes "


@pytest.mark.parametrize(("target", "spec"), [("label", SPEC), ("mask", SEG)], ids=["imaging", "segmentation"])
@pytest.mark.parametrize(
    ("n", "marked", "options", "problem"),
    [
        (19, 10, {}, "fewer usable images than data.min-rows = 20; too few to train on"),
        (30, 15, {"min_rows": 31}, "fewer usable images than data.min-rows = 31; too few to train on"),
        (40, 1, {}, SHORT + "that reach it"),
        (40, 0, {"min_per_class": 1}, SHORT + "that reach it"),
        (20, 10, {}, None),
    ],
    ids=["below-min-rows", "below-a-raised-min-rows", "a-class-below-min-per-class", "a-single-class", "at-minimum"],
)
def test_a_site_below_the_minimum_size_is_refused_by_name(tmp_path, target, spec, n, marked, options, problem):
    path = blank_npz(tmp_path, n, marked, target)
    spec = dataclasses.replace(spec, **{"min_rows": 20, **options})
    if problem is None:
        data = load_imaging_site(path, "hospital-3", spec, seed=0, target=target)
        assert len(data.train) + len(data.test) == n
        return
    with pytest.raises(DataError) as err:
        load_imaging_site(path, "hospital-3", spec, seed=0, target=target)
    held = "appear in" if target == "mask" else "have"
    problem = problem.format(name=spec.class_names[1], held=held, n=spec.min_per_class)
    assert str(err.value) == f"site 'hospital-3', file '{path}': {problem}"


def bomb_png(path, width: int, height: int):
    """A 1-bit black PNG of the given size written by hand: a few kB on disk, width × height pixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed pixels
    pixels = zlib.compressobj(9)
    body = b"".join(pixels.compress(row) for _ in range(height)) + pixels.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# 400 MP: Pillow raises DecompressionBombError; 100 MP: it only warns, and would decode it.
@pytest.mark.parametrize("side", [20_000, 10_000])
def test_a_decompression_bomb_is_skipped_by_name_or_fatal(tmp_path, side):
    folder = image_folder(tmp_path, extra_rows=["bomb.png,1"])
    assert bomb_png(folder / "bomb.png", side, side).stat().st_size < 100_000
    data = load_imaging_site(folder, "hospital-x", SPEC, seed=0)
    assert len(data.train) + len(data.test) == 12
    assert data.report["skipped-unreadable"] == 1 and data.report["skipped-files"] == ["bomb.png"]
    with pytest.raises(DataError) as err:
        load_imaging_site(folder, "hospital-x", dataclasses.replace(SPEC, on_corrupt="fail"), seed=0)
    assert str(err.value) == (
        f"site 'hospital-x', file '{folder / 'bomb.png'}': is not a readable image: a decompression bomb: more "
        "pixels than the 89478485 Pillow decodes"
    )
