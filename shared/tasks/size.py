"""The smallest site a study trains on: `data.min-rows` usable rows and `data.min-per-class` per class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from shared.errors import DataError

MIN_ROWS = 20  # below this a site's split and its metrics are noise
MIN_PER_CLASS = 2  # training rows each of at least two classes needs
MIN_HELD_OUT = 10  # a held-out split of fewer rows scores a metric in steps of 0.1 or coarser: unreliable
MIN_VALIDATION_PER_CLASS = 2  # a validation split with fewer rows of a class cannot place a decision threshold


@dataclass(frozen=True)
class SiteSize:
    """`data.min-rows`, `data.min-per-class` and `data.validation-fraction`, part of every task's `[data]`.

    `validation-fraction` is the share of a binary classifier's train split each site keeps aside to choose its
    decision threshold (0: the threshold stays at 0.5); other tasks ignore it."""

    min_rows: int = MIN_ROWS
    min_per_class: int = MIN_PER_CLASS
    validation_fraction: float = 0.2

    def size_problems(self) -> list[tuple[bool, str, str]]:
        """The settings' checks, as (bad, field, problem) for `raise_first`."""
        return [
            (self.min_rows < 1, "data.min-rows", "must be at least 1"),
            (self.min_per_class < 0, "data.min-per-class", "must be at least 0 (0: a single-class site trains too)"),
            (not 0 <= self.validation_fraction <= 0.5, "data.validation-fraction", "must be in [0, 0.5]"),
        ]


def class_counts(train_targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Training rows per class for labels (N,); for masks (N, H, W), the training images each class appears in."""
    if train_targets.ndim == 1:
        return np.bincount(train_targets, minlength=n_classes)
    flat = train_targets.reshape(len(train_targets), -1)
    return np.array([(flat == c).any(axis=1).sum() for c in range(n_classes)])


def check_site_size(
    site: str,
    file: str,
    rows: int,
    train_targets: np.ndarray,
    class_names: list[str],
    size: SiteSize,
    unit: str = "rows",
) -> None:
    """Refuse, before any training, a site with fewer than `min-rows` usable rows (images, notes), or with fewer
    than two classes holding `min-per-class` training rows each (for masks: appearing in that many training images;
    0: no such rule, as in FLamby's Fed-Heart-Disease, whose Switzerland trains on one class).
    No count is given: the refusal is sent to the server, and a small count can point at a patient."""
    if rows < size.min_rows:
        problem = f"fewer usable {unit} than data.min-rows = {size.min_rows}; too few to train on"
        raise DataError(site, problem, file=file)
    counts = class_counts(train_targets, len(class_names))
    if size.min_per_class and (counts >= size.min_per_class).sum() < 2:
        short = [name for name, n in zip(class_names, counts, strict=True) if n < size.min_per_class]
        held = f"appear in fewer training {unit}" if train_targets.ndim > 1 else f"have fewer training {unit}"
        raise DataError(
            site,
            f"class(es) {short} {held} than data.min-per-class = {size.min_per_class}; a site needs two classes that "
            "reach it",
            file=file,
        )


def validation_split(
    train_targets: np.ndarray, n_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a binary classifier's train split kept for fitting and for choosing the decision threshold
    (seeded, stratified); none set aside when `fraction` would give a class fewer than MIN_VALIDATION_PER_CLASS rows."""
    everything = np.arange(len(train_targets))
    binary = n_classes == 2 and train_targets.ndim == 1  # masks (N, H, W) have no threshold to place
    if not binary or (np.bincount(train_targets, minlength=2) * fraction < MIN_VALIDATION_PER_CLASS).any():
        return everything, everything[:0]
    return train_test_split(everything, test_size=fraction, random_state=seed, shuffle=True, stratify=train_targets)


def held_out_caveat(test_targets: np.ndarray) -> str | None:
    """Why a held-out split of class labels is too small to score a metric meaningfully, or None when it is not."""
    if len(test_targets) < MIN_HELD_OUT:
        return f"held-out split of {len(test_targets)} rows (under {MIN_HELD_OUT})"
    if len(np.unique(test_targets)) < 2:
        return "held-out split of a single class"
    return None
