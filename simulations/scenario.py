"""Turn the data scientist's table or image set into per-site files (what each hospital would hold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from client.site import SiteConfig
from shared.errors import ConfigError
from shared.partition import partition
from shared.tasks.size import MIN_ROWS
from shared.tasks.survival.spec import infer_survival_options
from shared.tasks.tabular.data import read_table
from shared.tasks.tabular.spec import canonical, infer_data_options


def split_table(
    table: pd.DataFrame,
    folder: Path,
    label: str,
    site_column: str | None,
    scheme: str,
    n_sites: int,
    alpha: float,
    seed: int,
) -> list[SiteConfig]:
    """Write one CSV per site under `folder` (what each hospital would hold) and return the sites."""
    folder.mkdir(parents=True, exist_ok=True)
    if site_column:
        if site_column not in table.columns:
            raise ConfigError("site-column", f"'{site_column}' is not a column of the table", source="simulation")
        groups = [(canonical(name), rows) for name, rows in table.groupby(site_column, sort=True)]
        groups = [(name, rows.drop(columns=[site_column])) for name, rows in groups]
    else:
        labels = table[label].map(lambda v: canonical(v) if pd.notna(v) else "").to_numpy()
        parts = partition(labels, n_sites, scheme, seed=seed, alpha=alpha, min_rows=MIN_ROWS)
        groups = [(f"hospital-{i}", table.iloc[rows]) for i, rows in enumerate(parts, start=1)]
    sites = []
    for name, rows in groups:
        path = folder / f"{name}.csv"
        rows.to_csv(path, index=False)
        sites.append(SiteConfig(name, path))
    return sites


def network_table(sites: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic national network: `sites` hospitals (column `hospital`) with `rows` patients each, 10 numeric
    features and a yes/no `outcome` that depends on two of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(sites * rows, 10))
    table = pd.DataFrame(x, columns=[f"f{i}" for i in range(10)])
    table["outcome"] = np.where(x[:, 0] + x[:, 1] + rng.normal(scale=0.5, size=len(x)) > 0, "yes", "no")
    table.insert(0, "hospital", np.repeat([f"h{i:03d}" for i in range(sites)], rows))
    return table


def table_study_data(
    path: Path, label: str, site_column: str | None, categorical: list[str] | None, given: dict
) -> tuple[pd.DataFrame, dict]:
    """Read the user's table and complete `[data]` from it; options the study file sets win."""
    na_values = given.get("na-values", ["?"])
    table = read_table(path, "simulation", na_values)
    inferred = infer_data_options(table, label, categorical, exclude=[site_column] if site_column else None)
    return table, {**inferred, **given}


def survival_study_data(
    path: Path, time: str, event: str, site_column: str | None, categorical: list[str] | None, given: dict
) -> tuple[pd.DataFrame, dict]:
    """Read the user's survival table and complete `[data]` from it (cut points and horizons from its follow-up);
    options the study file sets win."""
    table = read_table(path, "simulation", given.get("na-values", ["?"]))
    exclude = [site_column] if site_column else None
    return table, {**infer_survival_options(table, time, event, categorical, exclude), **given}


IMAGE_TARGETS = {"imaging": "label", "segmentation": "mask"}  # what each image of the task comes with


def split_image_set(
    path: Path, folder: Path, target: str, scheme: str, n_sites: int, alpha: float, seed: int
) -> list[SiteConfig]:
    """A MedMNIST-style .npz split into one .npz per site (train + val images; each site splits off its own test).

    A folder instead is taken as already split: each `*.npz` in it, or each sub-folder, is one hospital.
    """
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.suffix == ".npz" or p.is_dir())
        if not entries:
            raise ConfigError("data", f"'{path}' holds no .npz file and no sub-folder (one per site)", "simulation")
        return [SiteConfig(p.stem, p) for p in entries]
    try:
        archive = np.load(path)
        parts = [p for p in ("train", "val") if f"{p}_images" in archive.files and f"{p}_{target}s" in archive.files]
        if not parts:
            raise ConfigError("data", f"'{path}' has no train_images/train_{target}s", source="simulation")
        x = np.concatenate([archive[f"{p}_images"] for p in parts])
        y = np.concatenate([archive[f"{p}_{target}s"] for p in parts])
    except (OSError, ValueError) as exc:
        raise ConfigError("data", f"'{path}' cannot be read as .npz ({type(exc).__name__})", "simulation") from exc
    strata = y.reshape(len(y), -1).max(1) > 0 if target == "mask" else y.reshape(-1)
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    for i, rows in enumerate(partition(strata, n_sites, scheme, seed=seed, alpha=alpha, min_rows=40), start=1):
        site = folder / f"hospital-{i}.npz"
        np.savez(site, train_images=x[rows], **{f"train_{target}s": y[rows]})
        sites.append(SiteConfig(site.stem, site))
    return sites
