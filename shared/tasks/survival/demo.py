"""The built-in study: the German Breast Cancer Study Group 2 trial (GBSG2, real patients, shipped inside
scikit-survival) split over simulated hospitals; the outcome is recurrence-free survival in days."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.partition import partition
from shared.tasks.survival.extra import sksurv
from shared.tasks.survival.spec import infer_survival_options

TIME, EVENT = "time", "event"
HORIZONS = [365.0, 730.0, 1095.0, 1460.0, 1825.0]  # one to five years


def gbsg2_table() -> pd.DataFrame:
    """686 patients: 8 clinical covariates (3 categorical), days to recurrence or death, and whether it was observed."""
    features, outcome = sksurv("datasets").load_gbsg2()
    table = features.astype({c: str for c in features.select_dtypes("category").columns})
    table[TIME] = outcome["time"]
    table[EVENT] = outcome["cens"].astype(int)  # scikit-survival's "cens" is True when the event was observed
    return table


def write_demo_sites(folder: Path, n_sites: int = 3, seed: int = 1) -> list[Path]:
    """Write one CSV per hospital, the event rate skewed across them (Dirichlet, α = 2)."""
    table = gbsg2_table()
    parts = partition(table[EVENT].to_numpy(), n_sites, "dirichlet", seed=seed, alpha=2.0, min_rows=60)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(parts):
        path = folder / f"hospital-{i + 1}.csv"
        paths.append(atomic_write(path, lambda tmp, rows=rows: table.iloc[rows].to_csv(tmp, index=False)))
    return paths


def demo_study() -> StudyConfig:
    """A linear Cox model trained with FedAvg; the discrete-time model's cut points are in the study too."""
    data = {**infer_survival_options(gbsg2_table(), TIME, EVENT), "horizons": HORIZONS}
    return StudyConfig.from_dict(
        {
            "name": "gbsg2-survival-demo",
            "task": "survival",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 10, "min-sites": 2},
            "train": {"local-epochs": 2, "lr": 0.05, "batch-size": 64},
            "model": {"name": "cox"},
            "data": data,
        }
    )
