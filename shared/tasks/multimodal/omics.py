"""Where a site's omics values come from: the study's omics columns in the site's table, or a matrix file beside the
table (CSV or Parquet, one row per patient) joined to it on a patient id column; and how they are standardised."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from shared.errors import DataError
from shared.tasks.imaging.files import OUTSIDE, inside
from shared.tasks.multimodal.spec import MultimodalSpec
from shared.tasks.tabular.data import (
    FLOAT32_MAX,
    FeatureEncoding,
    apply_encoding,
    failer,
    first_row,
    fit_encoding,
    numeric_column,
)
from shared.tasks.tabular.spec import FeatureSpec, canonical
from shared.tasks.tabular.table import column_hint, read_table

SHOWN_COLUMNS = 10  # missing omics columns named in a message before "..."


@dataclass(frozen=True)
class OmicsSource:
    """The study's omics columns, and the matrix file (relative to the table's folder) and patient id column they
    are read from; no file: they are columns of the table."""

    columns: list[str]
    file: str = ""
    id_column: str = ""
    na_values: list[str] = field(default_factory=lambda: ["?"])

    @classmethod
    def of(cls, spec: MultimodalSpec) -> OmicsSource:
        """A study's omics source."""
        return cls(list(spec.omics), spec.omics_file, spec.id_column, list(spec.na_values))

    def values(self, frame: pd.DataFrame, table: Path, site: str | None) -> pd.DataFrame | None:
        """Every table row's omics values as floats, indexed as `frame` (a patient absent from the matrix file has
        none); None when the site holds no omics (no matrix file, or a table without any of the omics columns). Each
        problem is named by site, file, column and row."""
        if not self.file:
            return self._table_values(frame, failer(site, str(table)))
        if not self._located(table, site).is_file():
            return None  # a site without the matrix file holds no omics, as a table without the omics columns does
        if self.id_column not in frame.columns:
            raise DataError(
                site,
                f"id column not found (data.id-column keys the table to data.omics-file; {column_hint(frame)})",
                str(table),
                self.id_column,
            )
        doubled = [c for c in self.columns if c in frame.columns]
        if doubled:
            raise DataError(
                site,
                f"holds {len(doubled)} of the omics columns the study reads from data.omics-file '{self.file}': a "
                "study takes omics from the table or from the file, not both; remove them from the table",
                str(table),
                doubled[0],
            )
        matrix, fail = self.matrix(table, site)
        _refuse_lacking(matrix, self.columns, fail)
        ids = patient_ids(matrix[self.id_column])
        blank = ids == ""
        if blank.any():
            fail(f"{int(blank.sum())} row(s) have no patient id, first at data row {first_row(blank)}", self.id_column)
        repeated = ids.duplicated()
        if repeated.any():
            # Rows, never the id itself: the message may leave the site.
            row = first_row(repeated)
            earlier = first_row(ids == ids.iloc[row - 1])
            fail(
                f"patient ids repeat (the file holds one row per patient): data row {row} has the id of data row "
                f"{earlier}",
                self.id_column,
            )
        values = numeric_columns(matrix, self.columns, fail).set_axis(ids.to_numpy(), axis=0)
        return values.reindex(patient_ids(frame[self.id_column]).to_numpy()).set_axis(frame.index, axis=0)

    def matrix(self, table: Path, site: str | None) -> tuple[pd.DataFrame, Callable[..., NoReturn]]:
        """The matrix file as read, with its id column checked, and a failer naming it."""
        target, shown = self._located(table, site), str(table.parent / self.file)
        if not target.is_file():
            raise DataError(site, "omics file not found (data.omics-file, relative to the table's folder)", shown)
        matrix = read_table(target, site, self.na_values).frame
        fail = failer(site, shown)
        if self.id_column not in matrix.columns:
            fail(f"id column not found (data.id-column; {column_hint(matrix)})", self.id_column)
        return matrix, fail

    def _located(self, table: Path, site: str | None) -> Path:
        """Where the matrix file would be, inside the table's folder; a name that leaves it is refused."""
        target = inside(table.parent.resolve(), self.file)
        if target is None:
            raise DataError(site, f"data.omics-file '{self.file}' would {OUTSIDE}", str(table))
        return target

    def _table_values(self, frame: pd.DataFrame, fail: Callable[..., NoReturn]) -> pd.DataFrame | None:
        """The table's omics columns; none of them: None; only some: refused, naming the missing ones."""
        if not any(c in frame.columns for c in self.columns):
            return None
        _refuse_lacking(frame, self.columns, fail)
        return numeric_columns(frame, self.columns, fail)


def _refuse_lacking(frame: pd.DataFrame, columns: list[str], fail: Callable[..., NoReturn]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        fail(
            f"lacks {len(missing)} of the study's {len(columns)} omics columns (data.omics): "
            f"{', '.join(missing[:SHOWN_COLUMNS])}{' ...' if len(missing) > SHOWN_COLUMNS else ''}; every site needs "
            "the same list"
        )


def patient_ids(column: pd.Series) -> pd.Series:
    """Patient ids as text, so that 7, 7.0 and '7' agree across a table and a matrix file; a missing id is ''."""
    return column.map(lambda v: canonical(v) if pd.notna(v) else "")


def numeric_columns(frame: pd.DataFrame, columns: list[str], fail: Callable[..., NoReturn]) -> pd.DataFrame:
    """Columns as floats, refused as `numeric_column` refuses one; read numeric columns are checked all at once (a
    matrix may hold tens of thousands)."""
    block = frame[columns].copy()
    read_as_text = [c for c in columns if not pd.api.types.is_numeric_dtype(block[c])]
    for column in read_as_text:
        block[column] = numeric_column(block[column], fail, column)
    block = block.astype(float)
    out_of_range = np.abs(block.to_numpy()) > FLOAT32_MAX  # infinite ones too; NaN is missing
    if out_of_range.any():
        column = columns[int(np.flatnonzero(out_of_range.any(axis=0))[0])]
        numeric_column(block[column], fail, column)  # refuses it, naming the row
    return block


def omics_block(spec: MultimodalSpec) -> FeatureSpec:
    """The omics columns as a feature block: a present patient's missing value takes the train median, then every
    column is standardised."""
    return FeatureSpec(features=list(spec.omics), missing="impute")


def fit_omics(values: pd.DataFrame, train_idx: np.ndarray, spec: MultimodalSpec) -> FeatureEncoding | None:
    """Statistics from the train patients who have omics values; None when none has."""
    present = values.notna().any(axis=1).to_numpy()
    fitted = train_idx[present[train_idx]]
    return fit_encoding(values.iloc[fitted], omics_block(spec)) if len(fitted) else None


def encode_omics(
    values: pd.DataFrame, spec: MultimodalSpec, encoding: FeatureEncoding | None
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised values and presence: a patient with no value at all lacks the modality, and so does everyone
    when the site has no statistics to standardise with (no train patient had omics)."""
    out = np.zeros((len(values), len(spec.omics)), dtype=np.float32)
    present = values.notna().any(axis=1).to_numpy() & (encoding is not None)
    if encoding is not None and present.any():
        out[present] = apply_encoding(values[present], omics_block(spec), encoding)
    return out, present
