"""Built-in synthetic patients (no real patient data), generated on the fly: an image, a short note and lab values.

Three hidden findings, fair and independent coin flips, decide the outcome by majority vote: a nodule, fever and an
effusion. Each modality shows exactly two of them: the 28x28 image a lesion (the nodule) and a bright band across its
base (the effusion); the note the words "nodule" and "fever"; the record a high CRP (fever) and a high WBC count
(effusion), both measured with noise. One modality alone is right at most 75 % of the time (its two findings decide the
vote when they agree, else the third is a coin flip); any two modalities together show all three findings, so the
fused model can decide the vote even for a patient missing the image or the note."""

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
FINDINGS = ["nodule", "fever", "effusion"]  # the hidden findings; the note names the first two by these words
LABS = ["crp", "wbc", "age"]
FILLERS = [c for c in COMMON if c not in FINDINGS]  # a note's other findings, never a hidden one's word


def synthetic_patients(n: int, seed: int = 0, missing: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` patients and their uint8 images (n, 28, 28). The table holds the labs, the note (`missing` of them empty at
    random), `has_image` (False for `missing` of them at random), the outcome, and the hidden findings as bool columns
    named in FINDINGS, which a hospital's file leaves out."""
    rng = np.random.default_rng(seed)
    images, nodule, masks = synthetic_images(n, seed=seed + 1)
    fever, effusion = rng.random(n) < 0.5, rng.random(n) < 0.5
    size = images.shape[1]
    band = np.arange(size) >= size - rng.integers(4, 7, n)[:, None]  # the lowest 4-6 rows: fluid at the base
    shown = 70 * masks + 80 * (effusion[:, None] & band)[:, :, None]  # a lesion and a band a small CNN sees
    images = np.clip(images.astype(np.int32) + shown, 0, 255).astype(np.uint8)
    outcome = (nodule + fever + effusion >= 2).astype(int)
    labs = rng.normal(size=(n, len(LABS)))
    labs[:, 0] = np.round(5 + 20 * fever + 4 * labs[:, 0], 1)  # CRP (mg/L): high or normal, measured with noise
    labs[:, 1] = np.round(7 + 8 * effusion + 1.5 * labs[:, 1], 1)  # WBC (10^9/L): high or normal, with noise
    labs[:, 2] = np.round(55 + 15 * labs[:, 2])

    def note(has_nodule: bool, has_fever: bool) -> str:
        a, b, c = rng.choice(FILLERS, 3, replace=False)
        a, b = FINDINGS[1] if has_fever else a, FINDINGS[0] if has_nodule else b
        return str(rng.choice(TEMPLATES)).format(age=int(rng.integers(18, 95)), sex="patient", a=a, b=b, c=c)

    table = pd.DataFrame(labs, columns=LABS)
    table["note"] = [note(k, f) if rng.random() >= missing else "" for k, f in zip(nodule, fever, strict=True)]
    table["has_image"] = rng.random(n) >= missing
    table["outcome"] = np.array(CLASSES)[outcome]
    for name, finding in zip(FINDINGS, (nodule == 1, fever, effusion), strict=True):
        table[name] = finding
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
        part = part.drop(columns=["has_image", *FINDINGS])
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
