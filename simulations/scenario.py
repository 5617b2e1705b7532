"""Turn one table into per-site files, by a site column or a partitioner, and fill the study's schema."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from client.site import SiteConfig
from shared.errors import ConfigError
from shared.partition import partition
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
        parts = partition(labels, n_sites, scheme, seed=seed, alpha=alpha)
        groups = [(f"hospital-{i}", table.iloc[rows]) for i, rows in enumerate(parts, start=1)]
    sites = []
    for name, rows in groups:
        path = folder / f"{name}.csv"
        rows.to_csv(path, index=False)
        sites.append(SiteConfig(name, path))
    return sites


def table_study_data(
    path: Path, label: str, site_column: str | None, categorical: list[str] | None, given: dict
) -> tuple[pd.DataFrame, dict]:
    """Read the user's table and complete `[data]` from it; options the study file sets win."""
    na_values = given.get("na-values", ["?"])
    table = read_table(path, "simulation", na_values)
    inferred = infer_data_options(table, label, categorical, exclude=[site_column] if site_column else None)
    return table, {**inferred, **given}
