"""Small generated survival tables and studies for the survival tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.config import StudyConfig


def survival_table(n: int = 200, seed: int = 0, effect: float = 1.0) -> pd.DataFrame:
    """Proportional hazards in `age` (scaled) and `stage`, exponential times, uniform censoring (~30 %)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    stage = rng.choice(["I", "II", "III"], n)
    eta = effect * ((age - 60) / 10 + 0.5 * (stage == "III"))
    event_time = rng.exponential(1000 * np.exp(-eta))
    censor_time = rng.uniform(0, 3000, n)
    return pd.DataFrame(
        {
            "age": age.round(1),
            "stage": stage,
            "days": np.minimum(event_time, censor_time).round(),
            "died": (event_time <= censor_time).astype(int),
        }
    )


def survival_study(model: str = "cox", **data) -> StudyConfig:
    """A study of `survival_table`'s columns, with cut points and horizons inside its follow-up."""
    return StudyConfig.from_dict(
        {
            "task": "survival",
            "train": {"batch-size": 32, "lr": 0.05},
            "model": {"name": model},
            "data": {
                "time": "days",
                "event": "died",
                "features": ["age", "stage"],
                "categorical": {"stage": ["I", "II", "III"]},
                "cut-points": [100.0, 250.0, 500.0, 800.0, 1200.0, 2000.0],
                "horizons": [250.0, 500.0, 1000.0],
                **data,
            },
        }
    )


def write(table: pd.DataFrame, folder: Path, name: str = "h1.csv") -> Path:
    """The table as a site's CSV file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    table.to_csv(path, index=False)
    return path
