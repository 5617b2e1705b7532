"""The smallest site a study trains on: `data.min-rows` usable rows and `data.min-per-class` per class."""

from __future__ import annotations

import numpy as np

from shared.errors import DataError

MIN_ROWS = 20  # below this a site's split and its metrics are noise
MIN_PER_CLASS = 2  # training rows each of at least two classes needs


def check_site_size(
    site: str, file: str, rows: int, train_labels: np.ndarray, class_names: list[str], min_rows: int, min_per_class: int
) -> None:
    """Refuse, before any training, a site with fewer than `min_rows` usable rows, or with fewer than two classes
    holding `min_per_class` training rows each. No count is given: a small count can point at a patient."""
    if rows < min_rows:
        raise DataError(site, f"fewer usable rows than data.min-rows = {min_rows}; too few to train on", file=file)
    counts = np.bincount(train_labels, minlength=len(class_names))
    if (counts >= min_per_class).sum() < 2:
        short = [name for name, n in zip(class_names, counts, strict=True) if n < min_per_class]
        raise DataError(
            site,
            f"class(es) {short} have fewer training rows than data.min-per-class = {min_per_class}; a site needs "
            "two classes that reach it",
            file=file,
        )
