"""Built-in synthetic clinical notes (no real patient text): templated sentences whose findings hint at a service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.partition import partition

CLASSES = ["cardiology", "pulmonology", "neurology"]
FINDINGS = {
    "cardiology": ["chest pain", "palpitations", "elevated troponin", "atrial fibrillation", "murmur", "edema"],
    "pulmonology": ["productive cough", "wheezing", "low oxygen saturation", "dyspnea", "crackles", "hemoptysis"],
    "neurology": ["headache", "seizure", "facial droop", "numbness", "slurred speech", "confusion"],
}
COMMON = ["fever", "fatigue", "nausea", "dizziness", "hypertension", "diabetes", "back pain", "anxiety"]
TEMPLATES = [
    "Patient is a {age} year old {sex} presenting with {a} and {b}. History of {c}.",
    "{age}yo {sex}, admitted overnight. Reports {a}; exam notable for {b}. Also {c}.",
    "Seen in clinic for {a}. Denies {c}. On review, {b} noted. Follow up in two weeks.",
]


def synthetic_notes(n: int, seed: int = 0, signal: float = 0.6) -> pd.DataFrame:
    """`n` notes with labels; each finding is from the note's own service with probability `signal`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)

    def finding(label: int) -> str:
        pool = FINDINGS[CLASSES[label]] if rng.random() < signal else COMMON + FINDINGS[CLASSES[rng.integers(3)]]
        return str(rng.choice(pool))

    notes = [
        str(rng.choice(TEMPLATES)).format(
            age=int(rng.integers(18, 95)),
            sex=str(rng.choice(["man", "woman"])),
            a=finding(y),
            b=finding(y),
            c=finding(y),
        )
        for y in labels
    ]
    return pd.DataFrame({"text": notes, "label": np.array(CLASSES)[labels]})


def write_demo_sites(folder: Path, n_sites: int = 3, seed: int = 2, n_notes: int = 900) -> list[Path]:
    """One CSV of notes per hospital (Dirichlet label skew), a few empty notes included, written atomically."""
    table = synthetic_notes(n_notes, seed=seed)
    table.loc[table.sample(frac=0.01, random_state=seed).index, "text"] = "   "  # the pre-flight report counts these
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(partition(table["label"].to_numpy(), n_sites, "dirichlet", seed=seed, alpha=1.0), start=1):
        part = table.iloc[rows]
        paths.append(atomic_write(folder / f"hospital-{i}.csv", lambda tmp, part=part: part.to_csv(tmp, index=False)))
    return paths


def demo_study() -> StudyConfig:
    """The built-in text study (`medfed-sim --task text`)."""
    return StudyConfig.from_dict(
        {
            "name": "synthetic-notes-demo",
            "task": "text",
            "seed": 2,
            "federation": {"strategy": "fedavg", "rounds": 5, "min-sites": 2},
            "train": {"local-epochs": 1, "batch-size": 16, "lr": 0.005},
            "model": {"name": "transformer", "dim": 32, "layers": 1, "heads": 2},
            "data": {"classes": CLASSES, "max-length": 48, "vocab-size": 4096},
        }
    )
