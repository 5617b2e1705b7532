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


def matrix_study(**data) -> StudyConfig:
    """The tiny study reading omics from `omics.csv` beside the table, keyed by `pid`."""
    return tiny_study(**{"omics-file": "omics.csv", "id-column": "pid", **data})


def write_matrix_site(folder: Path, n: int = N, name: str = "omics.csv") -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """The tiny site with a patient id column `pid`, its omics moved to a matrix file `folder/name` (CSV or Parquet)
    in shuffled order; a patient with no omics value has no row there."""
    path, table = write_site(folder, n)
    table.insert(0, "pid", [f"P{i:03d}" for i in range(n)])
    matrix = table[["pid", *OMICS]].dropna(subset=OMICS, how="all").sample(frac=1.0, random_state=0)
    write_matrix(folder / name, matrix)
    table = table.drop(columns=OMICS)
    table.to_csv(path, index=False)
    return path, table, matrix


def write_matrix(path: Path, matrix: pd.DataFrame) -> None:
    """An omics matrix as CSV, or Parquet by its suffix."""
    if path.suffix == ".parquet":
        matrix.to_parquet(path, index=False)
    else:
        matrix.to_csv(path, index=False)
