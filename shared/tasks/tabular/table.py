"""Read a table the way its author meant: sniffed delimiter and decimal separator, empty unnamed columns dropped,
rows shifted by extra fields refused by row number."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import DataError

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}  # in order of preference on a tie
DECIMALS = (".", ",")
PARQUET = (".parquet", ".pq")
SNIFF_BYTES = 64 * 1024
UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column whose header cell is empty
DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")
DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
SHOWN_ROWS = 10  # row numbers listed in a message before "..."


@dataclass
class Table:
    """A table as read: its rows, the format it was read with, and what was done to it (said to the user)."""

    frame: pd.DataFrame
    delimiter: str = ","
    decimal: str = "."
    notes: list[str] = field(default_factory=list)


def read_table(path: Path, site: str | None, na_values: list[str], delimiter: str = "", decimal: str = "") -> Table:
    """Load a CSV/TSV or Parquet file; an empty `delimiter` or `decimal` is sniffed from the file's first lines.

    Unreadable input, or a row with more fields than the header, is a DataError naming the file (and the row).
    """
    if not path.is_file():
        raise DataError(site, "file not found", file=str(path))
    try:
        if path.suffix.lower() in PARQUET:
            table = Table(pd.read_parquet(path).replace({v: np.nan for v in na_values}))
        else:
            text = read_utf8(path, site)
            delimiter = delimiter or sniff_delimiter(text[:SNIFF_BYTES])
            decimal = decimal or sniff_decimal(text[:SNIFF_BYTES], delimiter)
            _refuse_shifted_rows(text, delimiter, site, str(path))
            frame = pd.read_csv(
                io.StringIO(text),
                sep=delimiter,
                decimal=decimal,
                na_values=na_values,
                keep_default_na=True,
                skipinitialspace=True,
            )
            table = Table(frame, delimiter, decimal)
            if (delimiter, decimal) != (",", "."):
                name = DELIMITERS.get(delimiter, repr(delimiter))
                table.notes.append(f"read as {name}-separated, decimal separator '{decimal}'")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(site, f"cannot be read as a table ({type(exc).__name__})", file=str(path)) from exc
    _drop_empty_unnamed(table)
    return table


def read_utf8(path: Path, site: str | None) -> str:
    """A text file's content (a UTF-8 byte-order mark dropped); other bytes are refused with their line and the fix."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        fix = "re-save it as UTF-8 (a spreadsheet's 'CSV UTF-8')"
        raise DataError(site, f"is not UTF-8 text (byte {exc.start}, line {line}): {fix}", file=str(path)) from exc


def read_with_options(path: Path, site: str | None, options: dict) -> Table:
    """`read_table` with a `[data]` section's (or its hints') na-values, delimiter and decimal."""
    na_values = options.get("na-values", ["?"])
    return read_table(path, site, na_values, options.get("delimiter", ""), options.get("decimal", ""))


def sniff_delimiter(sample: str) -> str:
    """The candidate delimiter that splits the header into the most fields (a comma when none splits it)."""
    header = next((line for line in sample.splitlines() if line.strip()), "")
    fields = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    best = max(fields.values(), default=1)
    return next(d for d in DELIMITERS if fields[d] == best) if best > 1 else ","


def sniff_decimal(sample: str, delimiter: str) -> str:
    """',' when the delimiter is not a comma and the sample's numbers are written 1,5 and never 1.5; else '.'."""
    if delimiter == ",":
        return "."
    lines = sample.splitlines()[1:-1] or sample.splitlines()[1:]  # the last line of a sample may be cut short
    values = [v.strip() for row in csv.reader(lines, delimiter=delimiter) for v in row]
    comma = any(DECIMAL_COMMA.fullmatch(v) for v in values)
    point = any(DECIMAL_POINT.fullmatch(v) for v in values)
    return "," if comma and not point else "."


def column_hint(frame: pd.DataFrame) -> str:
    """The table's columns, for a message about a column that is not there; a hint when the header did not split."""
    columns = ", ".join(map(str, frame.columns))
    only = str(frame.columns[0]) if len(frame.columns) == 1 else ""
    seen = [name for d, name in DELIMITERS.items() if d in only]
    hint = f"; the header reads as one column: is the file {seen[0]}-separated? (--delimiter)" if seen else ""
    return f"the file's columns: {columns}{hint}"


def row_ids(frame: pd.DataFrame, column: str | None, site: str | None, file: str) -> list[str]:
    """An id per row for a prediction file: the `column`'s values, else the data row numbers (1 = under the header)."""
    if column is None:
        return [str(i + 1) for i in range(len(frame))]
    if column not in frame.columns:
        raise DataError(site, f"id column not found ({column_hint(frame)})", file=file, column=column)
    return ["" if pd.isna(v) else str(v) for v in frame[column]]


def row_list(rows: list[int]) -> str:
    """Data row numbers for a message: the first few, then how many more."""
    shown = ", ".join(map(str, rows[:SHOWN_ROWS]))
    return shown + (f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else "")


def _refuse_shifted_rows(text: str, delimiter: str, site: str | None, file: str) -> None:
    """A data row with more fields than the header would shift its values one column over: refuse it by number."""
    rows = (row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row)  # pandas skips blank lines
    header = len(next(rows, []))
    shifted, trailing = [], True
    for number, row in enumerate(rows, start=1):
        if len(row) > header:
            shifted.append(number)
            trailing = trailing and not any(v.strip() for v in row[header:])
    if not shifted:
        return
    name = DELIMITERS.get(delimiter, repr(delimiter))
    fix = (
        f"remove the trailing {name} at the end of those rows"
        if trailing
        else "name the extra column in the header, or quote the values that hold the delimiter"
    )
    raise DataError(
        site,
        f"{len(shifted)} data row(s) have more fields than the header's {header}, so their values would shift "
        f"columns: data row(s) {row_list(shifted)}; {fix}",
        file=file,
    )


def _drop_empty_unnamed(table: Table) -> None:
    """Drop columns with neither a header name nor a value (a trailing delimiter on every line), and say so."""
    empty = [c for c in table.frame.columns if UNNAMED.fullmatch(str(c)) and table.frame[c].isna().all()]
    if empty:
        table.frame = table.frame.drop(columns=empty)
        table.notes.append(
            f"dropped {len(empty)} empty column(s) with no header name (a trailing delimiter on every line?)"
        )
