"""A tiny multimodal study and site table (record, 8x8 PNG images, notes, three omics columns), shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from shared.config import StudyConfig

OMICS = ["g1", "g2", "g3"]
N = 40


def tiny_study(**data) -> StudyConfig:
    """A multimodal study over the tiny table, small enough to build and train in milliseconds."""
    return StudyConfig.from_dict(
        {
            "name": "tiny-multimodal",
            "task": "multimodal",
            "federation": {"strategy": "fedavg", "rounds": 2, "min-sites": 1},
            "train": {"batch-size": 8},
            "model": {
                "embedding": 4,
                "head-hidden": 4,
                "record-hidden": [4],
                "omics-hidden": [4],
                "image-width": 4,
                "text-dim": 8,
                "modality-dropout": data.pop("modality-dropout", 0.2),
                "fusion": data.pop("fusion", "concat"),
            },
            "data": {
                "label": "y",
                "classes": ["no", "yes"],
                "features": ["age", "crp"],
                "image-column": "image",
                "note-column": "note",
                "omics": OMICS,
                "image-size": 8,
                "max-length": 8,
                "vocab-size": 256,
                "min-patients": 3,
                **data,
            },
        }
    )


def write_site(folder: Path, n: int = N, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """`folder/patients.csv` with images in `folder/images/`; every fourth patient lacks each optional modality."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"age": rng.integers(30, 90, n), "crp": rng.normal(5, 2, n).round(2)})
    table["image"] = ""
    for i in range(n):
        if i % 4 != 1:
            name = f"images/p{i}.png"
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / name)
            table.loc[i, "image"] = name
    table["note"] = ["" if i % 4 == 2 else f"patient {i} reports cough and fever" for i in range(n)]
    for g in OMICS:
        table[g] = np.where(np.arange(n) % 4 == 3, np.nan, rng.normal(size=n).round(3))
    table["y"] = np.where(np.arange(n) % 2 == 0, "no", "yes")
    path = folder / "patients.csv"
    table.to_csv(path, index=False)
    return path, table
