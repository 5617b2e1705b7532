"""Read, validate, clean, split and encode one site's table (CSV or Parquet) at the site."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.errors import ConfigError, DataError
from shared.partition import split_indices
from shared.tasks.base import NewInputs, SiteData
from shared.tasks.size import check_site_size, held_out_caveat, validation_split
from shared.tasks.tabular.spec import FeatureSpec, TabularSpec, canonical, first_located
from shared.tasks.tabular.table import column_hint, read_table, row_ids

FLOAT32_MAX = float(np.finfo(np.float32).max)
SPLIT_MARKS = ("train", "test")  # the values of data.split-column
S = TypeVar("S", bound=FeatureSpec)
MISSING_DROPPED = 'a missing feature value (data.missing = "drop")'  # why rows were dropped, in the report
DECIMAL = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)  # a number as a table writes it


def load_tabular_site(path: Path, site: str, spec: TabularSpec, seed: int) -> SiteData:
    """The site's train/test tensors plus a local report; every problem names site, file and column."""
    return load_table_site(path, site, spec, seed, tabular_site_data)


def load_table_site(
    path: Path, site: str, spec: S, seed: int, site_data: Callable[[pd.DataFrame, str, str, S, int], SiteData]
) -> SiteData:
    """A site's table read as it was written (delimiter, decimal, missing values), then checked, split and encoded by
    `site_data`; what the reading noticed leads the report's notes."""
    table = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal)
    data = site_data(table.frame, site, str(path), spec, seed)
    data.report["notes"] = table.notes + data.report["notes"]
    return data


def tabular_site_data(table: pd.DataFrame, site: str, file: str, spec: TabularSpec, seed: int) -> SiteData:
    """Validate, clean, split and encode one site's rows. Row numbers in messages are 1 + the frame's index, so a
    site's rows cut from a larger file (a simulation's) are named by their row in that file."""
    fail = failer(site, file)
    table, y, report = usable_rows(table, file, spec, fail)
    train_idx, test_idx, fit, val = split_rows(table, y, spec, seed, site, file, report, spec.validation_fraction)
    x_train, x_test, encoding = encode_features(table.iloc[train_idx], table.iloc[test_idx], spec)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y[train_idx])
    return SiteData(
        train=TensorDataset(x_train[fit], y_train[fit]),
        test=TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y[test_idx])),
        report=report,
        kept=encoding.to_dict(),
        val=TensorDataset(x_train[val], y_train[val]) if len(val) else None,
    )


def usable_rows(
    table: pd.DataFrame, file: str, spec: TabularSpec, fail: Callable[..., NoReturn]
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """The rows a site trains on (label and features checked; unlabelled rows, and under `data.missing = "drop"`
    rows missing a feature, dropped), their class indices and the start of the local report."""
    table, report = select_features(table, file, spec, [spec.label], fail)
    dropped = {"no label": int(table[spec.label].isna().sum())}
    table = table[table[spec.label].notna()]
    y = _labels(table[spec.label], spec, fail)
    if spec.missing == "drop":
        keep = table[spec.features].notna().all(axis=1).to_numpy()
        dropped[MISSING_DROPPED] = int((~keep).sum())
        table, y = table[keep], y[keep]
    report["rows-used"] = len(table)
    report["rows-dropped"] = {why: n for why, n in dropped.items() if n}
    report["notes"] = dropped_notes(report, [spec.label])
    if len(table) == 0:
        fail("no rows left after cleaning" + drop_hint(report))
    if len(np.unique(y)) < 2:
        fail("only one class left after cleaning; a site needs rows of two classes" + drop_hint(report), spec.label)
    return table, y, report


def drop_hint(report: dict[str, Any]) -> str:
    """What to try when rows dropped for a missing feature left a site too little to train on (no count: a refusal
    is sent to the server), or nothing."""
    if MISSING_DROPPED not in report.get("rows-dropped", {}):
        return ""
    return '; rows missing a feature value were dropped (data.missing = "drop"), and data.missing = "impute" keeps them'


def split_rows(
    table: pd.DataFrame,
    y: np.ndarray,
    spec: TabularSpec,
    seed: int,
    site: str,
    file: str,
    report: dict[str, Any],
    validation_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The site's train and held-out rows (stratified), and the positions in the train rows kept for fitting and
    for choosing a binary classifier's threshold; the site's size checked and the split's counts reported."""
    train_idx, test_idx = held_out_split(table, y, spec, seed, failer(site, file))
    split_seed = spec.split_seed if spec.split_seed >= 0 else seed
    try:
        check_site_size(site, file, len(y), y[train_idx], spec.class_names, spec)
    except DataError as exc:
        raise DataError(site, exc.problem + drop_hint(report), file) from None
    fit, val = validation_split(y[train_idx], len(spec.class_names), validation_fraction, split_seed)
    report["class-counts"] = _counts(y, spec.class_names)
    report["train-rows"], report["validation-rows"], report["test-rows"] = len(fit), len(val), len(test_idx)
    report["test-class-counts"] = _counts(y[test_idx], spec.class_names)
    caveat = held_out_caveat(y[test_idx])
    if caveat:
        report["held-out-caveat"] = caveat
        report["notes"].append(f"{caveat}: its metrics are unreliable")
    return train_idx, test_idx, fit, val


def _counts(y: np.ndarray, class_names: list[str]) -> dict[str, int]:
    return {name: int((y == i).sum()) for i, name in enumerate(class_names)}


def dropped_notes(report: dict, outcomes: list[str]) -> list[str]:
    """What was dropped and why, with `data.missing = "impute"` suggested where it would keep rows."""
    notes = []
    for why, n in report["rows-dropped"].items():
        share = n / max(1, report["rows-read"])
        note = f"{n} of {report['rows-read']} rows ({share:.0%}) dropped: {why}"
        if why == MISSING_DROPPED:
            missing = {c: k for c, k in report["missing-per-column"].items() if c not in outcomes}
            worst = sorted(missing.items(), key=lambda kv: -kv[1])[:3]
            note += f', most in {", ".join(f"{c} ({k})" for c, k in worst)}; data.missing = "impute" keeps them'
        notes.append(note)
    return notes


def select_features(
    table: pd.DataFrame, file: str, spec: FeatureSpec, outcomes: list[str], fail: Callable[..., NoReturn]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The site's outcome and feature columns, features checked and typed (numbers, agreed categories), rows in file
    order with their original index (for row numbers in messages), and the start of the local report."""
    kept = [*outcomes, *([spec.split_column] if spec.split_column else []), *spec.features]
    for column in kept:
        if column not in table.columns:
            fail(f"column not found ({column_hint(table)})", column)
    report: dict[str, Any] = {"file": file, "rows-read": len(table)}
    table = table[kept].copy()
    for column in spec.features:
        if table[column].isna().all():
            fail("column holds no values (all missing)", column)
    for column in spec.numeric:
        table[column] = numeric_column(table[column], fail, column)
    for column in spec.categorical:
        table[column] = _categories(table[column], spec.category_names(column), fail, column)
    report["missing-per-column"] = {c: int(n) for c, n in table.isna().sum().items() if n}
    return table, report


def held_out_split(
    table: pd.DataFrame, strata: np.ndarray, spec: FeatureSpec, seed: int, fail: Callable[..., NoReturn]
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row positions: as `data.split-column` marks them (train/test), else a seeded split stratified
    on `strata`."""
    if not spec.split_column:
        return split_indices(strata, spec.test_fraction, spec.split_seed if spec.split_seed >= 0 else seed)
    marks = table[spec.split_column].map(lambda v: canonical(v).lower() if pd.notna(v) else "")
    bad = ~marks.isin(SPLIT_MARKS)
    if bad.any():
        fail(f"{int(bad.sum())} value(s) are not train or test, first at data row {first_row(bad)}", spec.split_column)
    train, test = (np.flatnonzero((marks == mark).to_numpy()) for mark in SPLIT_MARKS)
    if not len(train) or not len(test):
        fail("marks no train row or no test row; the site needs both", spec.split_column)
    return train, test


def failer(site: str, file: str) -> Callable[..., NoReturn]:
    """A function raising DataError for this site and file, naming the column when given."""

    def fail(problem: str, column: str | None = None) -> NoReturn:
        raise DataError(site, problem, file=file, column=column)

    return fail


def numeric_column(values: pd.Series, fail: Callable[..., NoReturn], column: str) -> pd.Series:
    """A column as floats; non-numeric or beyond-float32 values are refused with the first row."""
    converted = pd.to_numeric(values, errors="coerce")
    # pandas 2 coerces an overflowing number ("1e309") to NaN, pandas 3 to inf: read such a value as Python does.
    missed = converted.isna() & values.notna()
    converted[missed] = values[missed].map(_as_float)
    bad = converted.isna() & values.notna()
    if bad.any():
        # Row numbers, never the values themselves: the message may leave the site.
        fail(f"{int(bad.sum())} non-numeric value(s) in a numeric column, first at data row {first_row(bad)}", column)
    # The model trains in float32: anything beyond its range is infinite there, and so is every loss after it.
    huge = converted.abs() > FLOAT32_MAX
    if huge.any():
        fail(
            f"{int(huge.sum())} infinite or out-of-range value(s) (beyond ±{FLOAT32_MAX:.1e}, float32's range) in a "
            f"numeric column, first at data row {first_row(huge)}",
            column,
        )
    return converted.astype(float)


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, str) and DECIMAL.fullmatch(value) else np.nan


def _categories(values: pd.Series, agreed: list[str], fail: Callable[..., NoReturn], column: str) -> pd.Series:
    as_text = values.map(lambda v: canonical(v) if pd.notna(v) else np.nan)
    unknown = as_text.notna() & ~as_text.isin(agreed)
    if unknown.any():
        fail(
            f"{int(unknown.sum())} value(s) outside the study's agreed categories {agreed}, first at data row "
            f"{first_row(unknown)}",
            column,
        )
    return as_text


def _labels(values: pd.Series, spec: TabularSpec, fail: Callable[..., NoReturn]) -> np.ndarray:
    as_text = values.map(canonical)
    index = {name: i for i, name in enumerate(spec.class_names)}
    unknown = ~as_text.isin(index)
    if unknown.any():
        kind = "binary" if spec.label_type == "binary" else "categorical"
        fail(
            f"{int(unknown.sum())} row(s) have a label outside the study's {kind} classes {spec.class_names}, "
            f"first at data row {first_row(unknown)}",
            spec.label,
        )
    return as_text.map(index).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class FeatureEncoding:
    """What a site learned from its own train split to encode rows: numeric columns' medians (imputation), means and
    standard deviations (standardisation), categorical columns' most frequent values (imputation). Kept at the site,
    so that prediction encodes new rows exactly as training did; never sent."""

    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready form (floats keep every bit through JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> FeatureEncoding:
        """The inverse of `to_dict`."""
        return cls(**{f.name: dict(saved.get(f.name, {})) for f in dataclasses.fields(cls)})


def fit_encoding(train: pd.DataFrame, spec: FeatureSpec) -> FeatureEncoding:
    """Imputation and scaling statistics from the site's own train split only; a column the study scales
    (`data.scale`) takes the study's center and scale instead."""
    medians, means, stds, modes = {}, {}, {}, {}
    if spec.numeric:
        numbers = train[spec.numeric]
        if spec.missing == "impute":
            medians = {c: float(v) for c, v in numbers.median().fillna(0.0).items()}
            numbers = numbers.fillna(medians)
        if spec.standardize:
            a = numbers.to_numpy(float)
            mean, std = a.mean(axis=0), a.std(axis=0)
            std[std == 0] = 1.0
            means = dict(zip(spec.numeric, map(float, mean), strict=True))
            stds = dict(zip(spec.numeric, map(float, std), strict=True))
        for column, (center, scale) in spec.scale.items():
            means[column], stds[column] = float(center), float(scale)
    if spec.missing == "impute":
        modes = {c: str(train[c].mode().iloc[0]) for c in spec.categorical if train[c].notna().any()}
    return FeatureEncoding(medians, means, stds, modes)


def apply_encoding(rows: pd.DataFrame, spec: FeatureSpec, encoding: FeatureEncoding) -> np.ndarray:
    """Impute, standardise and one-hot encode rows (agreed categories) with a site's fitted statistics."""
    blocks = []
    if spec.numeric:
        numbers = rows[spec.numeric].fillna(encoding.medians) if encoding.medians else rows[spec.numeric]
        a = numbers.to_numpy(float)
        if encoding.means:  # a column without statistics (not standardised, no study scale) stays as read
            mean = np.array([encoding.means.get(c, 0.0) for c in spec.numeric])
            std = np.array([encoding.stds.get(c, 1.0) for c in spec.numeric])
            a = (a - mean) / std
            huge = [c for c, v in zip(spec.numeric, np.abs(a).max(axis=0, initial=0.0), strict=True) if v > FLOAT32_MAX]
            if huge:  # only a study's scale can do this: a site's own statistics keep values near their spread
                raise ConfigError(f"data.scale.{huge[0]}", f"takes values beyond ±{FLOAT32_MAX:.1e} (float32's range)")
        blocks.append(a)
    for column in spec.categorical:
        values = rows[column].fillna(encoding.modes[column]) if column in encoding.modes else rows[column]
        onehot = np.stack([(values == c).to_numpy(float) for c in spec.category_names(column)], axis=1)
        blocks.append(onehot[:, 1:] if spec.drop_first else onehot)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def encode_new_rows(path: Path, site: str, spec: FeatureSpec, kept: dict[str, Any], id_column: str | None) -> NewInputs:
    """New patients' rows for prediction: read and checked as training rows are (the same named errors), encoded with
    the statistics the site kept from its train split; an id per row from `id_column`, else the data row number. A
    row with a missing feature under `data.missing = "drop"` gets no input, as training dropped such rows."""
    frame = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal).frame
    ids = row_ids(frame, id_column, site, str(path))
    x, usable = encode_new_frame(frame, site, str(path), spec, kept)
    return NewInputs(ids, torch.from_numpy(x), usable)


def encode_new_frame(
    frame: pd.DataFrame, site: str, file: str, spec: FeatureSpec, kept: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """New rows' features checked as training's are and encoded with the kept statistics, and which rows those are
    (under `data.missing = "drop"`, not the rows missing a feature)."""
    table, _ = select_features(frame, file, spec, [], failer(site, file))
    usable = table[spec.features].notna().all(axis=1).to_numpy() | (spec.missing != "drop")
    return apply_encoding(table[usable], spec, FeatureEncoding.from_dict(kept)), usable


def encode_features(
    train: pd.DataFrame, test: pd.DataFrame, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray, FeatureEncoding]:
    """Both splits encoded with the train split's statistics, and those statistics (for the site to keep)."""
    encoding = fit_encoding(train, spec)
    return apply_encoding(train, spec, encoding), apply_encoding(test, spec, encoding), encoding


def first_row(mask: pd.Series) -> int:
    """1-based data row (header excluded) of the first True in a mask over the file's rows."""
    return first_located(mask)[1]
