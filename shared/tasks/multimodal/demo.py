"""Built-in synthetic patients (no real patient data), generated on the fly: a lesion image, a short note and lab
values. The outcome is a majority vote of three findings, each seen by one modality only: the image shows a lesion,
the note mentions a nodule, the CRP lab value is high. Each modality alone is right at most 75 % of the time (when it
agrees with the vote); all three together decide it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from shared.atomic import atomic_write, atomic_write_bytes
from shared.config import StudyConfig
from shared.partition import partition
from shared.tasks.imaging.demo import synthetic_images
from shared.tasks.text.demo import COMMON, TEMPLATES

CLASSES = ["no", "yes"]  # yes is the positive class
KEYWORD = "nodule"
LABS = ["crp", "wbc", "age"]


def synthetic_patients(n: int, seed: int = 0, missing: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` patients (labs, note, outcome; `missing` of the notes empty at random) and their uint8 images (n, 28, 28);
    a patient's image is missing where its `has_image` is False (`missing` of them)."""
    rng = np.random.default_rng(seed)
    images, lesion, masks = synthetic_images(n, seed=seed + 1)
    images = np.clip(images.astype(np.int32) + 70 * masks, 0, 255).astype(np.uint8)  # a lesion a small CNN sees
    keyword, high = rng.random(n) < 0.5, rng.random(n) < 0.5
    outcome = (lesion + keyword + high >= 2).astype(int)
    labs = rng.normal(size=(n, len(LABS)))
    labs[:, 0] = np.round(5 + 20 * high + 4 * labs[:, 0], 1)  # CRP (mg/L): high or normal, measured with noise
    labs[:, 2] = np.round(55 + 15 * labs[:, 2])

    def note(has_keyword: bool) -> str:
        a, b, c = rng.choice(COMMON, 3, replace=False)
        b = KEYWORD if has_keyword else b
        return str(rng.choice(TEMPLATES)).format(age=int(rng.integers(18, 95)), sex="patient", a=a, b=b, c=c)

    table = pd.DataFrame(labs, columns=LABS)
    table["note"] = [note(k) if rng.random() >= missing else "" for k in keyword]
    table["has_image"] = rng.random(n) >= missing
    table["outcome"] = np.array(CLASSES)[outcome]
    return table, images


def write_demo_sites(
    folder: Path, n_sites: int = 3, seed: int = 2, n_patients: int = 600, missing: float = 0.1
) -> list[Path]:
    """One folder per hospital (Dirichlet label skew): `hospital-N.csv`, its image column naming PNGs in `images/`."""
    table, images = synthetic_patients(n_patients, seed=seed, missing=missing)
    paths = []
    labels = table["outcome"].to_numpy()
    for i, rows in enumerate(partition(labels, n_sites, "dirichlet", seed=seed, alpha=2.0, min_rows=40)):
        site = folder / f"hospital-{i + 1}"
        (site / "images").mkdir(parents=True, exist_ok=True)
        part = table.iloc[rows].copy()
        part.insert(len(LABS), "image", "")
        for row in np.flatnonzero(part["has_image"].to_numpy()):
            name = f"images/patient-{rows[row] + 1:05d}.png"
            buffer = io.BytesIO()
            Image.fromarray(images[rows[row]]).save(buffer, format="PNG")
            atomic_write_bytes(site / name, buffer.getvalue())
            part.iloc[row, part.columns.get_loc("image")] = name
        part = part.drop(columns="has_image")
        # Named after the hospital: a simulation names each site after its file.
        paths.append(atomic_write(site / f"{site.name}.csv", lambda tmp, part=part: part.to_csv(tmp, index=False)))
    return paths


def demo_data_options() -> dict:
    """The `[data]` section describing the demo tables."""
    return {
        "label": "outcome",
        "classes": CLASSES,
        "features": LABS,
        "image-column": "image",
        "note-column": "note",
        "max-length": 24,
        "vocab-size": 1024,
    }


def demo_study() -> StudyConfig:
    """The built-in multimodal study (`medfed-sim --task multimodal`)."""
    return StudyConfig.from_dict(
        {
            "name": "synthetic-multimodal-demo",
            "task": "multimodal",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 8, "min-sites": 2},
            "train": {"local-epochs": 2, "batch-size": 32, "lr": 0.01},
            "model": {"fusion": "concat", "embedding": 16, "text-dim": 16},
            "data": demo_data_options(),
        }
    )
