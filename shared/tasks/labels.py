"""Map a site's raw label values onto the study's agreed classes, naming the first one outside them."""

from __future__ import annotations

import numpy as np

from shared.errors import DataError


def label_indices(
    raw: np.ndarray, class_names: list[str], site: str, file: str, column: str | None = None
) -> np.ndarray:
    """Class index per entry; a value outside the study's classes is an error naming site, file and entry."""
    index = {name: i for i, name in enumerate(class_names)}
    names = np.array([str(v).strip() for v in raw])
    unknown = ~np.isin(names, list(index))
    if unknown.any():
        raise DataError(
            site,
            f"{int(unknown.sum())} label(s) outside the study's classes {class_names}, "
            f"first at entry {int(np.argmax(unknown)) + 1}",
            file=file,
            column=column,
        )
    return np.array([index[n] for n in names], dtype=np.int64)
