"""What `medfed-sim` checks and says before anything starts: the data read as its author meant, its label's
classes, and each site's rows validated as that site will validate them, with errors naming the user's file and
row."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from client.site import SiteConfig
from shared.config import StudyConfig
from shared.errors import ConfigError, DataError
from shared.tasks import Task, get_task
from shared.tasks.multimodal.omics import OmicsSource
from shared.tasks.multimodal.spec import data_spec as multimodal_spec
from shared.tasks.multimodal.spec import infer_multimodal_options
from shared.tasks.schedule import with_default_schedule
from shared.tasks.survival.data import survival_site_data
from shared.tasks.survival.spec import data_spec as survival_spec
from shared.tasks.survival.spec import infer_survival_options
from shared.tasks.tabular.data import tabular_site_data
from shared.tasks.tabular.spec import (
    data_spec,
    identifier_columns,
    infer_data_options,
    label_counts,
    rare_label_values,
)
from shared.tasks.tabular.table import Table, column_hint, read_with_options
from shared.tasks.text import study_tokenizer
from shared.tasks.text.data import FORMATS as NOTE_FORMATS
from shared.tasks.text.data import read_notes, text_options, text_site_data
from shared.tasks.text.spec import data_spec as text_spec
from simulations.report import LISTED_SITES
from simulations.scenario import (
    IMAGE_TARGETS,
    image_files,
    image_set_size,
    image_site_entries,
    split_image_set,
    write_multimodal_sites,
    write_sites,
)
from simulations.source import TABLE_FILES, Source, read_source

NOTE_FILES = tuple(NOTE_FORMATS)

REPORTED = (
    "rows-read",
    "rows-used",
    "rows-dropped",
    "train-rows",
    "validation-rows",
    "test-rows",
)  # per site, into summary.json


@dataclass
class Plan:
    """A checked study, ready to run: its sites' files are written by `write` into the run's folder."""

    study: StudyConfig
    n_sites: int
    write: Callable[[Path], list[SiteConfig]]
    lines: list[str] = field(default_factory=list)  # said before the run starts
    caveats: dict[str, str] = field(default_factory=dict)  # site -> why its held-out figures are unreliable
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)  # site -> rows read, used, dropped, split
    rows_per_site: float | None = None  # the user's data: its rows (images, notes) over its sites, where known


def plan_study(study: StudyConfig, from_file: bool, hints: dict[str, Any], categorical: list[str] | None) -> Plan:
    """Check the study's data source (`simulation.data`, or the built-in data) and plan its sites; `hints` are the
    command line's table options (label, delimiter, decimal, na-values), which win over the study file's. The user's
    data without a study file gets its task's default schedule for its sites' size (shared/tasks/schedule.py)."""
    plan = _plan(study, from_file, hints, categorical)
    if study.simulation.data and not from_file:
        plan.study = with_default_schedule(plan.study, plan.rows_per_site)
        unit = "images" if study.task in IMAGE_TARGETS else "notes" if study.task == "text" else "rows"
        size = "unknown size" if plan.rows_per_site is None else f"about {plan.rows_per_site:.0f} {unit} each"
        plan.lines.append(
            f"defaults for {study.task} sites of {size}: FedAvg, {plan.study.federation.rounds} rounds x "
            f"{plan.study.train.local_epochs} local epochs, lr {plan.study.train.lr:g}, batch "
            f"{plan.study.train.batch_size} (README: Defaults)"
        )
    return plan


def _plan(study: StudyConfig, from_file: bool, hints: dict[str, Any], categorical: list[str] | None) -> Plan:
    source = study.simulation
    if not source.data:
        task = get_task(study.task)
        return Plan(study, source.sites, lambda folder: _demo_sites(task, folder, source.sites))
    path = Path(source.data)
    if not path.exists():
        raise DataError(None, "not found", file=str(path))
    given = study.data if from_file else {}  # without a study file, describe the user's data, not the demo's
    if "features" in given:  # the study's features and categories win: infer none (a stray cell would refuse them)
        categorical = []
    name = study.name if from_file else path.stem
    if study.task in IMAGE_TARGETS:
        study = dataclasses.replace(study, data=_image_options(study.task, path, given), name=name)
        n_sites = len(image_site_entries(path)) if path.is_dir() else source.sites
        images = image_set_size(path, IMAGE_TARGETS[study.task])
        return Plan(
            study,
            n_sites,
            lambda folder: _usable_image_sites(study, path, folder / "sites"),
            rows_per_site=images / n_sites if images is not None else None,
        )
    if study.task == "text":
        columns = {"label-column": hints.get("label"), "text-column": hints.get("text-column")}
        named = {**given, **{key: column for key, column in columns.items() if column}}
        notes = read_source(path, lambda file: Table(read_notes(file, "simulation")), source.site_column, NOTE_FILES)
        options = text_options(notes.table.frame, "simulation", str(path), named, exclude=(source.site_column,))
        study = dataclasses.replace(study, data=options, name=name)
        groups = notes.groups(options["label-column"], study)
        spec, tokenizer = text_spec(study), study_tokenizer(study)
        for site, rows in groups:  # every site's notes checked as its run will read them, named by the user's file
            text_site_data(rows, site, notes.file(site), spec, tokenizer, study.seed)
        return Plan(
            study,
            len(groups),
            lambda folder: write_sites(groups, folder / "sites"),
            notes.lines,
            rows_per_site=_mean_rows(groups),
        )
    if study.task == "survival":
        return _survival_plan(study, path, {**given, **hints}, categorical, name)
    if study.task == "multimodal":
        return _multimodal_plan(study, path, {**given, **hints}, categorical, name)
    return _table_plan(study, path, {**given, **hints}, categorical, name)


def _image_options(task: str, path: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The classes, image size and channels an image set says it has (the study's own win): a file's, or for a folder
    of sites every site's classes, and the largest size and channels of any, so that no site's images lose detail."""
    infer = get_task(task).infer_data
    if not path.is_dir():
        return infer(path, "simulation", given)
    found = [infer(entry, entry.stem, {}) for entry in image_site_entries(path)]
    if IMAGE_TARGETS[task] == "mask":  # a mask's classes name its values: the site with the most has them all
        classes = max((f["classes"] for f in found), key=len)
    else:
        classes = sorted({c for f in found for c in f["classes"]}, key=lambda c: (isinstance(c, str), c))
    sizes = {
        key: max(f[key] for f in found if key in f)
        for key in ("image-size", "channels")
        if any(key in f for f in found)
    }
    return {"classes": classes, **sizes, **given}


def _usable_image_sites(study: StudyConfig, path: Path, folder: Path) -> list[SiteConfig]:
    """The user's image set split into sites, each loaded as its run will load it, so that a site the split leaves
    unusable (a class too rare there) stops the run before it starts, named with the user's file. Sites the user
    split themselves (a folder) are their own files, named as they are."""
    source, task = study.simulation, get_task(study.task)
    target = IMAGE_TARGETS[study.task]
    sites = split_image_set(path, folder, target, source.partition, source.sites, source.alpha, study.seed)
    if path.is_dir():
        return sites
    for site in sites:
        try:
            task.load_site(site.data_path, site.name, study)
        except DataError as exc:
            alpha = f", alpha {source.alpha:g}" if source.partition == "dirichlet" else ""
            tries = ["a higher --alpha"] * (source.partition == "dirichlet") + ["--partition iid"] * (
                source.partition != "iid"
            )
            raise DataError(
                site.name,
                f"{exc.problem}; its images are its share of this file, split over {source.sites} sites "
                f"({source.partition}{alpha}): try {', '.join([*tries, 'fewer --sites', 'another --seed'])}",
                file=str(path),
            ) from exc
    return sites


def _survival_plan(
    study: StudyConfig, path: Path, given: dict[str, Any], categorical: list[str] | None, name: str
) -> Plan:
    if not given.get("time") or not given.get("event"):
        raise ConfigError("data.time", "is not set: --data needs --time and --event (or data.time and data.event)")
    source = _read_table(path, given, study)
    table = source.table
    by_site = [study.simulation.site_column] if study.simulation.site_column else []
    ids, left_out = _identifiers(table.frame, [given["time"], given["event"], *by_site], categorical, path)
    inferred = infer_survival_options(table.frame, given["time"], given["event"], categorical, [*by_site, *ids])
    study = dataclasses.replace(study, data={**inferred, **given}, name=name)
    groups = source.groups(given["event"], study)  # a partition is stratified on the event
    spec = survival_spec(study)
    reports = {
        site: survival_site_data(rows, site, source.file(site), spec, study.seed).report for site, rows in groups
    }
    lines = source.lines + left_out + _site_notes(reports)
    return Plan(
        study,
        len(groups),
        lambda folder: write_sites(groups, folder / "sites", table.delimiter, table.decimal),
        lines,
        {site: r["held-out-caveat"] for site, r in reports.items() if "held-out-caveat" in r},
        {site: {k: r[k] for k in REPORTED if k in r} for site, r in reports.items()},
        _mean_rows(groups),
    )


def _multimodal_plan(
    study: StudyConfig, path: Path, given: dict[str, Any], categorical: list[str] | None, name: str
) -> Plan:
    """Each site's rows, and a copy of the images they name (and of the omics file), under its own folder (what that
    hospital would hold)."""
    if path.is_dir():
        raise DataError(
            None,
            "is a folder: a multimodal study reads one table (its image paths relative to the table's folder), with "
            "--site-column naming each row's hospital",
            file=str(path),
        )
    label, source = _labelled_table(path, given, study)
    table = source.table
    site_column = study.simulation.site_column
    exclude = [site_column] if site_column else None
    study = dataclasses.replace(
        study, data=infer_multimodal_options(table.frame, given, categorical, exclude), name=name
    )
    spec = multimodal_spec(study)
    groups = source.groups(label, study)
    images = {site: image_files(rows, spec.image_column, path) for site, rows in groups} if spec.image_column else {}
    if spec.omics_file:
        OmicsSource.of(spec).matrix(path, None)  # inside the table's folder, with its id column
        images = {site: [*images.get(site, []), spec.omics_file] for site, _ in groups}
    lines = [*source.lines, f"modalities: {', '.join(spec.modalities)}"]
    return Plan(
        study,
        len(groups),
        lambda folder: write_multimodal_sites(groups, images, path.parent, folder / "sites"),
        lines,
        rows_per_site=_mean_rows(groups),
    )


def _site_notes(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Each site's notes on its rows (what was dropped and why, a small held-out split), the first few in full."""
    noted = [(site, note) for site, report in reports.items() for note in report["notes"]]
    lines = [f"site '{site}': {note}" for site, note in noted[:LISTED_SITES]]
    if len(noted) > LISTED_SITES:
        lines.append(f"... and {len(noted) - LISTED_SITES} more notes on the sites' rows (summary.json: preflight)")
    return lines


def _identifiers(
    frame: pd.DataFrame, exclude: list[str], categorical: list[str] | None, path: Path
) -> tuple[list[str], list[str]]:
    """The columns left out of inferred features as identifiers, and the lines that say so (none when the user listed
    the categorical columns: a column they name is theirs to keep)."""
    if categorical is not None:
        return [], []
    ids = identifier_columns(frame, exclude)
    why = "a different value on every row (an identifier, a row number or free text)"
    return ids, [f"{path.name}: column '{c}' left out of the features: {why}" for c in ids]


def _read_table(path: Path, given: dict[str, Any], study: StudyConfig) -> Source:
    """The user's table, or folder of one table per site, read with the study's table options."""
    site_column = study.simulation.site_column
    return read_source(path, lambda file: read_with_options(file, None, given), site_column, TABLE_FILES)


def _labelled_table(path: Path, given: dict[str, Any], study: StudyConfig) -> tuple[str, Source]:
    """The label column's name and the user's table (or folder of tables), which must hold it."""
    label = given.get("label")
    if not label:
        raise ConfigError("data.label", "is not set: --data needs --label COLUMN (or data.label in the study file)")
    source = _read_table(path, given, study)
    frame = source.table.frame
    if label not in frame.columns:
        raise DataError(None, f"column not found (--label; {column_hint(frame)})", file=str(path), column=label)
    return label, source


def _table_plan(
    study: StudyConfig, path: Path, given: dict[str, Any], categorical: list[str] | None, name: str
) -> Plan:
    label, source = _labelled_table(path, given, study)
    table = source.table
    frame, site_column = table.frame, study.simulation.site_column
    counts = label_counts(frame[label])
    rare = rare_label_values(counts) if "classes" not in given else []
    if rare:
        raise DataError(None, _rare_problem(rare, counts), file=str(path), column=label)
    by_site = [site_column] if site_column else []
    ids, left_out = _identifiers(frame, [label, *by_site], categorical, path)
    inferred = infer_data_options(frame, label, categorical, exclude=[*by_site, *ids])
    study = dataclasses.replace(study, data={**inferred, **given}, name=name)
    spec = data_spec(study)
    groups = source.groups(label, study)
    reports = {site: tabular_site_data(rows, site, source.file(site), spec, study.seed).report for site, rows in groups}
    lines = source.lines + left_out
    shown = ", ".join(f"{c} ({counts.get(c, 0)} rows)" for c in spec.class_names)
    positive = f"; positive class: {spec.class_names[1]}" if len(spec.class_names) == 2 else ""
    lines.append(f"label '{label}': {len(spec.class_names)} classes: {shown}{positive}")
    lines += _site_notes(reports)
    return Plan(
        study,
        len(groups),
        lambda folder: write_sites(groups, folder / "sites", table.delimiter, table.decimal),
        lines,
        {site: r["held-out-caveat"] for site, r in reports.items() if "held-out-caveat" in r},
        {site: {k: r[k] for k in REPORTED} for site, r in reports.items()},
        _mean_rows(groups),
    )


def _mean_rows(groups: list[tuple[str, pd.DataFrame]]) -> float:
    return sum(len(rows) for _, rows in groups) / max(1, len(groups))


def _rare_problem(rare: list[str], counts: dict[str, int]) -> str:
    values = " and ".join(f"'{v}' ({counts[v]} rows)" for v in rare)
    others = ", ".join(f"{v} ({n})" for v, n in counts.items() if v not in rare)
    return (
        f"{values} {'is' if len(rare) == 1 else 'are'} far rarer than the other values ({others}): more likely a "
        "code than a class. Map those rows to a class or remove them, or make the value mean missing with "
        f"--na-values '?,{rare[0]}' (those rows are then dropped and counted); to keep it as a class, list "
        "data.classes in a study file"
    )


def _demo_sites(task: Task, folder: Path, n_sites: int) -> list[SiteConfig]:
    return [SiteConfig(p.stem, p) for p in task.write_demo_sites(folder / "sites", n_sites)]


def check_site_count(study: StudyConfig, n_sites: int) -> None:
    """A study needing more sites per round than the simulation has would wait out its connect timeout: refuse it."""
    needed = study.federation.min_sites
    if n_sites < needed:
        raise ConfigError(
            "federation.min-sites",
            f"is {needed}, more than the {n_sites} site(s) of this simulation; pass --min-sites {max(1, n_sites)}",
            source="medfed-sim",
        )
