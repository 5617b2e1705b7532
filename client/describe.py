"""What `medfed-site check --data FILE` reports without a study: the data as it is, kept on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.tasks import get_task
from shared.tasks.tabular.table import DELIMITERS, PARQUET, read_table

TABLES = (".csv", ".tsv", ".txt", *PARQUET)


def describe_data(path: Path, site: str) -> dict[str, Any]:
    """A table's format, rows and columns (kind, distinct values, missing); an image set's classes and sizes."""
    if path.suffix.lower() not in TABLES:
        return {"file": str(path), **get_task("imaging").infer_data(path, site, {})}
    table = read_table(path, site, ["?"])
    frame = table.frame
    columns = {
        str(c): f"{'numeric' if frame[c].dtype.kind in 'iuf' else 'text'}, {frame[c].nunique()} distinct"
        + (f", {n} missing" if (n := int(frame[c].isna().sum())) else "")
        for c in frame.columns
    }
    return {
        "file": str(path),
        "format": f"{DELIMITERS.get(table.delimiter, table.delimiter)}-separated, decimal '{table.decimal}'",
        "rows": len(frame),
        "columns": columns,
        "notes": [*table.notes, "give --study STUDY to check the data against a study"],
    }
