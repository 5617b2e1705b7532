"""Split rows across simulated sites (IID, Dirichlet label skew, quantity skew) and a site's rows into train/test."""

from __future__ import annotations

import numpy as np

from shared.errors import ConfigError

SCHEMES = ("iid", "dirichlet", "quantity")


def partition(
    labels: np.ndarray, n_sites: int, scheme: str, seed: int, alpha: float = 0.5, min_rows: int = 10
) -> list[np.ndarray]:
    """Row indices per site, disjoint and covering every row; deterministic for a seed."""
    if n_sites < 1:
        raise ConfigError("sites", "must be at least 1", source="partition")
    if alpha <= 0:
        raise ConfigError("alpha", "must be > 0", source="partition")
    if len(labels) < n_sites * min_rows:
        raise ConfigError(
            "sites",
            f"{n_sites} sites of at least {min_rows} rows need {n_sites * min_rows} rows, the data has {len(labels)}",
            source="partition",
        )
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), n_sites)]
    if scheme == "quantity":
        return _quantity_skew(len(labels), n_sites, alpha, min_rows, rng)
    if scheme == "dirichlet":
        return _label_skew(labels, n_sites, alpha, min_rows, rng)
    raise ConfigError("scheme", f"'{scheme}' is not one of {', '.join(SCHEMES)}", source="partition")


def _quantity_skew(n: int, n_sites: int, alpha: float, min_rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Site sizes from Dirichlet(alpha) over what is left after each site's minimum.
    shares = rng.dirichlet([alpha] * n_sites)
    sizes = min_rows + np.floor(shares * (n - n_sites * min_rows)).astype(int)
    sizes[-1] = n - sizes[:-1].sum()
    bounds = np.cumsum(sizes)[:-1]
    return [np.sort(p) for p in np.split(rng.permutation(n), bounds)]


def _label_skew(
    labels: np.ndarray, n_sites: int, alpha: float, min_rows: int, rng: np.random.Generator, tries: int = 100
) -> list[np.ndarray]:
    # Per class, shares of its rows drawn from Dirichlet(alpha); redrawn until every site has min_rows
    # rows and at least two classes, as a real site must to train and be evaluated.
    classes = np.unique(labels)
    for _ in range(tries):
        parts: list[list[int]] = [[] for _ in range(n_sites)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * n_sites)) * len(rows)).astype(int)[:-1]
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].extend(chunk.tolist())
        if all(len(p) >= min_rows and len(np.unique(labels[p])) > 1 for p in parts):
            return [np.sort(np.asarray(p)) for p in parts]
    raise ConfigError(
        "alpha",
        f"Dirichlet({alpha}) gave a site under {min_rows} rows or with a single class in "
        f"{tries} draws; raise alpha or use fewer sites",
        source="partition",
    )


def split_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split, stratified when every class has more than two rows (as FLamby does)."""
    # Imported here, not with the module: medfed-sim's option help reads SCHEMES and should not wait for scikit-learn.
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if (counts[counts > 0] > 2).all() else None
    return train_test_split(
        np.arange(len(y)),
        test_size=test_fraction,
        train_size=1 - test_fraction,
        random_state=seed,
        shuffle=True,
        stratify=stratify,
    )
