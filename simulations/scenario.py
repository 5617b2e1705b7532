"""Turn the data scientist's table or image set into per-site files (what each hospital would hold)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from client.site import SiteConfig
from shared.atomic import atomic_write
from shared.errors import ConfigError, DataError
from shared.partition import partition
from shared.tasks.multimodal.data import image_problems, named_images
from shared.tasks.size import MIN_ROWS
from shared.tasks.tabular.spec import canonical
from shared.tasks.tabular.table import column_hint, row_list


def site_groups(
    table: pd.DataFrame,
    source: str,
    label: str,
    site_column: str,
    scheme: str,
    n_sites: int,
    alpha: float,
    seed: int,
) -> list[tuple[str, pd.DataFrame]]:
    """Each site's name and rows (keeping their index: 1 + index is the row's number in `source`), by the site
    column or, without one, by `scheme`."""
    if not site_column:
        labels = table[label].map(lambda v: canonical(v) if pd.notna(v) else "").to_numpy()
        parts = partition(labels, n_sites, scheme, seed=seed, alpha=alpha, min_rows=MIN_ROWS)
        return [(f"hospital-{i}", table.iloc[rows]) for i, rows in enumerate(parts, start=1)]
    if site_column not in table.columns:
        raise DataError(
            None, f"column not found (--site-column; {column_hint(table)})", file=source, column=site_column
        )
    unnamed = table[site_column].isna().to_numpy()
    if unnamed.any():
        rows = [int(i) + 1 for i in table.index[unnamed]]
        raise DataError(
            None,
            f"{len(rows)} row(s) name no site: data row(s) {row_list(rows)}; fill in their site, or remove them",
            file=source,
            column=site_column,
        )
    groups = [(canonical(name), rows) for name, rows in table.groupby(site_column, sort=True)]
    for name, rows in groups:
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            raise DataError(
                None,
                f"site '{name}' (data row(s) {row_list([int(i) + 1 for i in rows.index])}) cannot name the site's "
                "file: it holds a path separator or is '.' or '..'; rename it in this column",
                file=source,
                column=site_column,
            )
    return [(name, rows.drop(columns=[site_column])) for name, rows in groups]


def write_sites(
    groups: list[tuple[str, pd.DataFrame]], folder: Path, delimiter: str = ",", decimal: str = "."
) -> list[SiteConfig]:
    """Write one CSV per site under `folder` (what each hospital would hold, in the source's own format)."""
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    for name, rows in groups:
        path = folder / f"{name}.csv"
        rows.to_csv(path, index=False, sep=delimiter, decimal=decimal)
        sites.append(SiteConfig(name, path))
    return sites


def image_files(rows: pd.DataFrame, column: str, table: Path) -> list[str]:
    """The image paths a site's rows name (relative to the table's folder), each checked to exist inside that folder;
    a bad one is refused with its rows before anything is written."""
    if column not in rows.columns:
        return []
    cells = rows[column][named_images(rows[column])]
    for problem, numbers in image_problems(cells, table.parent.resolve()).items():
        problem = f"{len(numbers)} image path(s) {problem}: data row(s) {row_list(numbers)}"
        raise DataError(None, problem, str(table), column)
    return sorted({str(cell).strip() for cell in cells})


def write_multimodal_sites(
    groups: list[tuple[str, pd.DataFrame]], images: dict[str, list[str]], source: Path, folder: Path
) -> list[SiteConfig]:
    """Each site's `patients.csv` and a copy of its files (images, an omics file; same relative paths) in a folder of
    its own."""
    sites = []
    for name, rows in groups:
        site = folder / name
        for relative in images.get(name, []):
            target = site / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda tmp, src=source / relative: shutil.copyfile(src, tmp))
        site.mkdir(parents=True, exist_ok=True)
        path = atomic_write(site / "patients.csv", lambda tmp, rows=rows: rows.to_csv(tmp, index=False))
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


IMAGE_TARGETS = {"imaging": "label", "segmentation": "mask"}  # what each image of the task comes with


def image_site_entries(folder: Path) -> list[Path]:
    """The sites of an image set already split: each `*.npz` in the folder, or each sub-folder (at least one)."""
    entries = sorted(p for p in folder.iterdir() if p.suffix == ".npz" or p.is_dir())
    if not entries:
        raise ConfigError("data", f"'{folder}' holds no .npz file and no sub-folder (one per site)", "simulation")
    return entries


def image_set_size(path: Path, target: str) -> int | None:
    """Images with targets in a MedMNIST-style .npz (train + val), or in a folder of per-site .npz files; None for
    sub-folder sites or a file that cannot be read (which the split itself then names)."""
    files = [path] if path.is_file() else image_site_entries(path)
    if not files or any(p.suffix != ".npz" for p in files):
        return None
    try:
        total = 0
        for file in files:
            with np.load(file) as archive:
                total += sum(
                    len(archive[f"{p}_{target}s"]) for p in ("train", "val") if f"{p}_{target}s" in archive.files
                )
        return total
    except (OSError, ValueError):
        return None


def split_image_set(
    path: Path, folder: Path, target: str, scheme: str, n_sites: int, alpha: float, seed: int
) -> list[SiteConfig]:
    """A MedMNIST-style .npz split into one .npz per site (train + val images; each site splits off its own test).

    A folder instead is taken as already split: each `*.npz` in it, or each sub-folder, is one hospital.
    """
    if path.is_dir():
        return [SiteConfig(p.stem, p) for p in image_site_entries(path)]
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
