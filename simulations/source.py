"""The user's `--data` as read: one table, split into sites later, or a folder holding one table per site."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.config import StudyConfig
from shared.errors import ConfigError, DataError
from shared.tasks.size import MIN_ROWS
from shared.tasks.tabular.spec import canonical
from shared.tasks.tabular.table import PARQUET, Table
from simulations.report import LISTED_SITES
from simulations.scenario import site_groups

TABLE_FILES = (".csv", ".tsv", ".txt", *PARQUET)  # what a folder's tables may be; notes add .jsonl/.json


@dataclass
class Source:
    """Every row of the user's data, how each file was read, and for a folder each site's own file and rows."""

    path: Path
    table: Table  # every row; a folder's files stacked, indexed by (site, row in its file)
    lines: list[str]  # said before the run
    sites: dict[str, tuple[Path, pd.DataFrame]] = field(default_factory=dict)  # a folder's: site -> file, rows

    def file(self, site: str) -> str:
        """The file a site's rows came from, which messages about its rows name."""
        return str(self.sites[site][0]) if self.sites else str(self.path)

    def groups(self, label: str, study: StudyConfig) -> list[tuple[str, pd.DataFrame]]:
        """Each site's name and rows (1 + index is a row's number in its file): a folder's files, or the table split
        by the site column or, without one, by the study's partition (stratified on `label`)."""
        if self.sites:
            return [(site, rows) for site, (_, rows) in self.sites.items()]
        sim = study.simulation
        frame, source = self.table.frame, str(self.path)
        groups = site_groups(frame, source, label, sim.site_column, sim.partition, sim.sites, sim.alpha, study.seed)
        if sim.site_column:
            check_site_rows(groups, source, sim.site_column, int(study.data.get("min-rows", MIN_ROWS)))
        return groups


def read_source(path: Path, read: Callable[[Path], Table], site_column: str, suffixes: tuple[str, ...]) -> Source:
    """`path` read with `read`: a file as it is, or a folder's files with these suffixes, each one site named by its
    file (its stem), all holding the same columns."""
    if not path.is_dir():
        table = read(path)
        return Source(path, table, [f"{path.name}: {note}" for note in table.notes])
    if site_column:
        raise ConfigError(
            "simulation.site-column",
            f"is '{site_column}', but --data '{path}' is a folder, whose sites are its files: drop --site-column",
            "medfed-sim",
        )
    listed = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in listed if p.suffix.lower() in suffixes]
    if not files:
        raise DataError(
            None,
            f"is a folder with no {', '.join(suffixes)} file: give one file per site in it, or one table with "
            "--site-column naming each row's hospital",
            file=str(path),
        )
    sites: dict[str, tuple[Path, pd.DataFrame]] = {}
    lines = []
    for file in files:
        site = canonical(file.stem)
        if site in sites:
            raise DataError(site, f"two files are this site: {sites[site][0].name} and {file.name}", file=str(path))
        table = read(file)
        sites[site] = (file, table.frame)
        lines += [f"{file.name}: {note}" for note in table.notes]
    _refuse_other_columns(sites)
    shown = ", ".join(file.name for file, _ in list(sites.values())[:LISTED_SITES])
    more = f", ... ({len(sites)} in all)" if len(sites) > LISTED_SITES else ""
    lines.insert(0, f"{path.name}: {len(sites)} site(s), one per file: {shown}{more}")
    others = [p.name for p in listed if p not in files]
    if others:
        lines.insert(1, f"{path.name}: not read (not {', '.join(suffixes)}): {', '.join(others[:LISTED_SITES])}")
    stacked = pd.concat({site: frame for site, (_, frame) in sites.items()}, names=["site", "row"])
    return Source(path, Table(stacked), lines, sites)


def _refuse_other_columns(sites: dict[str, tuple[Path, pd.DataFrame]]) -> None:
    """Every site's file must hold the first file's columns, no more and no fewer (their order may differ)."""
    first, frame = next(iter(sites.values()))
    for site, (file, rows) in sites.items():
        lacks = [c for c in frame.columns if c not in rows.columns]
        extra = [c for c in rows.columns if c not in frame.columns]
        if lacks or extra:
            problems = ([f"lacks {', '.join(map(str, lacks))}"] if lacks else []) + (
                [f"has {', '.join(map(str, extra))} besides"] if extra else []
            )
            raise DataError(site, f"its columns are not {first.name}'s: it {' and '.join(problems)}", file=str(file))


def check_site_rows(groups: list[tuple[str, pd.DataFrame]], source: str, site_column: str, min_rows: int) -> None:
    """Refuse a site column that gives sites too small to train on, before any site's columns are read (a one-row
    site's columns hold nothing to infer); most such sites at once mean a column that does not name hospitals."""
    small = [name for name, rows in groups if len(rows) < min_rows]
    if not small:
        return
    listed = ", ".join(f"'{name}'" for name in small[:LISTED_SITES]) + (
        f" and {len(small) - LISTED_SITES} more" if len(small) > LISTED_SITES else ""
    )
    advice = (
        "is it the column naming each row's hospital?"
        if 2 * len(small) > len(groups)
        else "give their rows to another site, or remove them"
    )
    raise DataError(
        None,
        f"gives {len(groups)} sites, {len(small)} of them with fewer rows than data.min-rows = {min_rows} "
        f"({listed}): {advice}",
        file=source,
        column=site_column,
    )
