"""Imaging loaders (MedMNIST .npz, folder + labels.csv) and a clear error, naming site and file, per bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from shared.errors import DataError
from shared.tasks.imaging.data import load_imaging_site
from shared.tasks.imaging.spec import ImagingSpec

SPEC = ImagingSpec(classes=[0, 1], image_size=16, channels=1, augment=False)


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
    assert len(data.train) == 80 and len(data.test) == 40  # train + val for training, test held out
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
