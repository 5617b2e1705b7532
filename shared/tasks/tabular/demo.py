"""The built-in study: scikit-learn's Wisconsin breast cancer data (real patients) split non-IID over sites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.partition import partition

LABEL = "diagnosis"
CLASSES = ["benign", "malignant"]  # malignant is the positive class


def breast_cancer_table() -> pd.DataFrame:
    """569 patients, 30 numeric features and a benign/malignant diagnosis, from scikit-learn's package data."""
    bunch = load_breast_cancer(as_frame=True)
    table = bunch.data.copy()
    table.columns = [c.replace(" ", "_") for c in table.columns]
    # scikit-learn codes 0 = malignant, 1 = benign.
    table[LABEL] = np.where(bunch.target.to_numpy() == 0, "malignant", "benign")
    return table


def write_demo_sites(folder: Path, n_sites: int = 3, seed: int = 2, alpha: float = 1.0) -> list[Path]:
    """Write one CSV per hospital (Dirichlet label skew); each file is what that site would hold."""
    return [write_demo_site(folder, i, n_sites, seed, alpha) for i in range(n_sites)]


def write_demo_site(folder: Path, index: int, n_sites: int, seed: int = 2, alpha: float = 1.0) -> Path:
    """Write hospital `index` of the demo split, atomically, so concurrent sites never read half a file."""
    table = breast_cancer_table()
    rows = partition(table[LABEL].to_numpy(), n_sites, "dirichlet", seed=seed, alpha=alpha, min_rows=40)[index]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"hospital-{index + 1}.csv"
    return atomic_write(path, lambda tmp: table.iloc[rows].to_csv(tmp, index=False))


def demo_data_options() -> dict:
    """The `[data]` section that describes the demo table."""
    features = [c for c in breast_cancer_table().columns if c != LABEL]
    return {"label": LABEL, "label-type": "binary", "classes": CLASSES, "features": features}


def demo_study() -> StudyConfig:
    """The built-in study `medfed-sim` runs with no arguments (and `flwr run .` runs from pyproject)."""
    return StudyConfig.from_dict(
        {
            "name": "breast-cancer-demo",
            "task": "tabular",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 10, "min-sites": 2},
            "train": {"local-epochs": 2, "lr": 0.01},
            "model": {"name": "mlp"},
            "data": demo_data_options(),
        }
    )
