"""Read, validate, clean, split and encode one site's table (CSV or Parquet) at the site."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.errors import DataError
from shared.partition import split_indices
from shared.tasks.base import SiteData
from shared.tasks.size import check_site_size, held_out_caveat
from shared.tasks.tabular.spec import FeatureSpec, TabularSpec, canonical
from shared.tasks.tabular.table import column_hint, read_table

FLOAT32_MAX = float(np.finfo(np.float32).max)
SPLIT_MARKS = ("train", "test")  # the values of data.split-column


def load_tabular_site(path: Path, site: str, spec: TabularSpec, seed: int) -> SiteData:
    """The site's train/test tensors plus a local report; every problem names site, file and column."""
    table = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal)
    data = tabular_site_data(table.frame, site, str(path), spec, seed)
    data.report["notes"] = table.notes + data.report["notes"]
    return data


def tabular_site_data(table: pd.DataFrame, site: str, file: str, spec: TabularSpec, seed: int) -> SiteData:
    """Validate, clean, split and encode one site's rows. Row numbers in messages are 1 + the frame's index, so a
    site's rows cut from a larger file (a simulation's) are named by their row in that file."""
    fail = failer(site, file)
    table, report = select_features(table, file, spec, [spec.label], fail)
    dropped = {"no label": int(table[spec.label].isna().sum())}
    table = table[table[spec.label].notna()]
    y = _labels(table[spec.label], spec, fail)
    if spec.missing == "drop":
        keep = table[spec.features].notna().all(axis=1).to_numpy()
        dropped['a missing feature value (data.missing = "drop")'] = int((~keep).sum())
        table, y = table[keep], y[keep]
    report["rows-used"] = len(table)
    report["rows-dropped"] = {why: n for why, n in dropped.items() if n}
    report["notes"] = _dropped_notes(report, spec.label)
    if len(table) == 0:
        fail("no rows left after dropping rows with missing values")
    if len(np.unique(y)) < 2:
        fail("only one class left after cleaning; a site needs rows of at least two classes", spec.label)
    train_idx, test_idx = held_out_split(table, y, spec, seed, fail)
    check_site_size(site, file, len(y), y[train_idx], spec.class_names, spec)
    x_train, x_test = encode_features(table.iloc[train_idx], table.iloc[test_idx], spec)
    report["class-counts"] = _counts(y, spec.class_names)
    report["train-rows"], report["test-rows"] = len(train_idx), len(test_idx)
    report["test-class-counts"] = _counts(y[test_idx], spec.class_names)
    caveat = held_out_caveat(y[test_idx])
    if caveat:
        report["held-out-caveat"] = caveat
        report["notes"].append(f"{caveat}: its metrics are unreliable")
    return SiteData(
        train=TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y[train_idx])),
        test=TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y[test_idx])),
        report=report,
    )


def _counts(y: np.ndarray, class_names: list[str]) -> dict[str, int]:
    return {name: int((y == i).sum()) for i, name in enumerate(class_names)}


def _dropped_notes(report: dict, label: str) -> list[str]:
    """What was dropped and why, with `data.missing = "impute"` suggested where it would keep rows."""
    notes = []
    for why, n in report["rows-dropped"].items():
        share = n / max(1, report["rows-read"])
        note = f"{n} of {report['rows-read']} rows ({share:.0%}) dropped: {why}"
        if why.startswith("a missing feature"):
            missing = {c: k for c, k in report["missing-per-column"].items() if c != label}
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


def encode_features(train: pd.DataFrame, test: pd.DataFrame, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Impute (policy `impute`), standardise and one-hot encode both splits with the train split's statistics."""
    # Imputation and scaling statistics come from the site's own train split only.
    blocks_train, blocks_test = [], []
    if spec.numeric:
        num_train, num_test = train[spec.numeric], test[spec.numeric]
        if spec.missing == "impute":
            medians = num_train.median().fillna(0.0)
            num_train, num_test = num_train.fillna(medians), num_test.fillna(medians)
        a, b = num_train.to_numpy(float), num_test.to_numpy(float)
        if spec.standardize:
            mean, std = a.mean(axis=0), a.std(axis=0)
            std[std == 0] = 1.0
            a, b = (a - mean) / std, (b - mean) / std
        blocks_train.append(a)
        blocks_test.append(b)
    for column in spec.categorical:
        agreed = spec.category_names(column)
        fill = train[column].mode().iloc[0] if spec.missing == "impute" and train[column].notna().any() else None
        for frame, blocks in ((train, blocks_train), (test, blocks_test)):
            values = frame[column].fillna(fill) if fill is not None else frame[column]
            onehot = np.stack([(values == c).to_numpy(float) for c in agreed], axis=1)
            blocks.append(onehot[:, 1:] if spec.drop_first else onehot)
    return (
        np.concatenate(blocks_train, axis=1).astype(np.float32),
        np.concatenate(blocks_test, axis=1).astype(np.float32),
    )


def first_row(mask: pd.Series) -> int:
    """1-based data row (header excluded) of the first True in a mask over the file's rows."""
    return int(mask.index[mask.to_numpy()][0]) + 1
