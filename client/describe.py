"""What `medfed-site check --data FILE` reports without a study: the data as it is, kept on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.config import MIN_CELL
from shared.tasks import get_task
from shared.tasks.multimodal.describe import describe_modalities
from shared.tasks.tabular.table import DELIMITERS, PARQUET, read_table

TABLES = (".csv", ".tsv", ".txt", *PARQUET)


def describe_data(
    path: Path, site: str, modalities: dict[str, Any] | None = None, min_cell: int = MIN_CELL
) -> dict[str, Any]:
    """A table's format, rows and columns (kind, distinct values, missing), and where `modalities` name a multimodal
    table's image, note and omics columns (or omics file), each modality's coverage and problems (counts under
    `min_cell` as a bound); an image set's classes and sizes."""
    if path.suffix.lower() not in TABLES:
        return {"file": str(path), **get_task("imaging").infer_data(path, site, {})}
    table = read_table(path, site, ["?"])
    frame = table.frame
    columns = {
        str(c): f"{'numeric' if frame[c].dtype.kind in 'iuf' else 'text'}, {frame[c].nunique()} distinct"
        + (f", {n} missing" if (n := int(frame[c].isna().sum())) else "")
        for c in frame.columns
    }
    described = {
        "file": str(path),
        "format": f"{DELIMITERS.get(table.delimiter, table.delimiter)}-separated, decimal '{table.decimal}'",
        "rows": len(frame),
        "columns": columns,
    }
    if modalities:
        described["modalities"] = describe_modalities(frame, path, site, modalities, min_cell)
    return {**described, "notes": [*table.notes, "give --study STUDY to check the data against a study"]}
