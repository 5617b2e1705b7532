"""What a site's pre-flight check says about a multimodal table before any study: each modality's coverage and what
would stop training (image paths missing or leaving the folder, a note column that is not text, omics columns
missing from the table or its matrix file), small counts shown only as a bound; its shareable schema, and the study
`[data]` that sites' schemas agree on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from shared.errors import ConfigError, DataError
from shared.tasks.multimodal.data import image_problems, named_images
from shared.tasks.multimodal.omics import OmicsSource
from shared.tasks.tabular.data import first_row
from shared.tasks.tabular.schema import agreed_data, check_min_cell, site_choices, table_schema, without_split
from shared.tasks.tabular.table import read_with_options

ROLES = {"image-column": "image", "note-column": "note", "id-column": "id"}  # a schema's type for these columns
KINDS = ("numeric", "categorical")  # a record column's types in a schema; the others are roles


def describe_modalities(
    frame: pd.DataFrame, table: Path, site: str, hints: dict[str, Any], min_cell: int
) -> dict[str, str]:
    """One line per modality `hints` name (image-column, note-column, omics, omics-file with id-column): its column(s),
    the rows that have it and the problems training would refuse; a count under `min_cell` is shown as a bound."""
    check_min_cell(min_cell)
    out = {}
    if hints.get("image-column"):
        out["image"] = _images(frame, table, hints["image-column"], min_cell)
    if hints.get("note-column"):
        out["note"] = _notes(frame, hints["note-column"], min_cell)
    source = omics_source(table, site, hints)
    if source is not None:
        out["omics"] = _omics(frame, table, site, source, min_cell)
    return out


def omics_source(table: Path, site: str, hints: dict[str, Any]) -> OmicsSource | None:
    """The omics that `hints` name (with omics-file and no omics list: every column of that file but its id), or
    None."""
    columns, file = list(hints.get("omics") or []), hints.get("omics-file", "")
    if not columns and not file:
        return None
    id_column = _id_column(hints) if file else ""
    return OmicsSource(columns or matrix_columns(table, site, hints), file, id_column, _na_values(hints))


def matrix_columns(table: Path, site: str, hints: dict[str, Any]) -> list[str]:
    """The omics columns of the matrix file `hints` name: every column but the patient id."""
    id_column = _id_column(hints)
    matrix, _ = OmicsSource([], hints.get("omics-file", ""), id_column, _na_values(hints)).matrix(table, site)
    return [str(c) for c in matrix.columns if c != id_column]


def _id_column(hints: dict[str, Any]) -> str:
    if not hints.get("id-column"):
        raise ConfigError("data.id-column", "must name the patient id column that keys both the table and omics-file")
    return str(hints["id-column"])


def _na_values(hints: dict[str, Any]) -> list[str]:
    return list(hints.get("na-values") or ["?"])


def multimodal_schema(path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
    """A tabular schema of the record columns and the label; the image, note, id and omics columns by role only (no
    value of theirs, not even a frequent one); a matrix file's omics columns under `omics-file`."""
    if "label" not in hints:
        raise ConfigError("data.label", "must name the label column of a table")
    frame = without_split(read_with_options(path, site, hints).frame, hints)
    roles = {hints[key]: role for key, role in ROLES.items() if hints.get(key)}
    if not hints.get("omics-file"):
        roles.update({c: "omics" for c in hints.get("omics") or []})
    held = {c: role for c, role in roles.items() if c in frame.columns}
    categorical = list(hints.get("categorical") or [])
    schema = table_schema(frame.drop(columns=list(held)), site, hints["label"], categorical, min_cell)
    schema |= {"task": "multimodal", **site_choices(hints)}
    schema["columns"].update({c: {"type": role} for c, role in held.items()})
    if hints.get("omics-file"):
        schema["omics-file"] = {
            "file": hints["omics-file"],
            "id-column": hints.get("id-column", ""),
            "columns": list(hints.get("omics") or matrix_columns(path, site, hints)),
        }
    return schema


def _images(frame: pd.DataFrame, table: Path, column: str, min_cell: int) -> str:
    if column not in frame.columns:
        return f"column '{column}' not found: no patient has an image here"
    named = named_images(frame[column])
    problems = image_problems(frame[column][named], table.parent.resolve())
    line = f"column '{column}': {_share(int(named.sum()), len(frame), min_cell)} name an image"
    for problem, rows in problems.items():
        line += f"; {_count(len(rows), min_cell)} path(s) {problem}, first at data row {rows[0]}"
    return line


def _notes(frame: pd.DataFrame, column: str, min_cell: int) -> str:
    if column not in frame.columns:
        return f"column '{column}' not found: no patient has a note here"
    cells = frame[column]
    not_text = cells.notna() & ~cells.map(lambda v: isinstance(v, str))
    if not_text.any():
        return (
            f"column '{column}': not text, {_count(int(not_text.sum()), min_cell)} value(s) hold numbers or other "
            f"values, first at data row {first_row(not_text)}"
        )
    written = cells.fillna("").astype(str).str.strip() != ""
    return f"column '{column}': text, {_share(int(written.sum()), len(frame), min_cell)} have a note"


def _omics(frame: pd.DataFrame, table: Path, site: str, source: OmicsSource, min_cell: int) -> str:
    try:
        values = source.values(frame, table, site)
    except DataError as exc:
        return str(exc)
    n = len(source.columns)
    if values is None:
        return f"none of the {n} omics column(s) in the table: no patient has omics here"
    where = f"in '{source.file}', keyed by '{source.id_column}'" if source.file else "in the table"
    has = int(values.notna().any(axis=1).sum())
    return f"all {n} column(s) {where}; {_share(has, len(frame), min_cell)} have omics values"


def _count(n: int, min_cell: int) -> str:
    """A count, or only its bound when it is under `min_cell` (small-cell suppression)."""
    return str(n) if n >= min_cell else f"fewer than {min_cell}"


def _share(n: int, total: int, min_cell: int) -> str:
    """`n` of `total` rows; when the rows with it, or those without, are under `min_cell`, only a bound."""
    if 0 < n < min_cell:
        return f"fewer than {min_cell} of {total} rows"
    if 0 < total - n < min_cell:
        return f"all but fewer than {min_cell} of {total} rows"
    return f"{n} of {total} rows ({n / total:.0%})" if total else "0 rows"


def agreed_multimodal_data(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `[data]` of a multimodal study over these sites: the record's label, classes, features and categories as
    a table's (every site the same columns), and the image, note and omics columns of the sites that hold them (a
    site may lack a modality, but the sites holding one must name it alike); refused naming the sites otherwise."""
    record = {
        source: {**s, "columns": {c: v for c, v in s["columns"].items() if v["type"] in KINDS}}
        for source, s in schemas.items()
    }
    data = agreed_data(record, "multimodal")
    for key, role in (("image-column", "image"), ("note-column", "note")):
        held = _held(schemas, role)
        if len(held) > 1:
            raise ConfigError(f"data.{key}", f"differs between sites: {_named(held)}; a study names one")
        if held:
            data[key] = next(iter(held))
    # How each site holding omics holds them: its columns, and its matrix file and id column (none: in its table).
    holds = {}
    for schema in schemas.values():
        matrix = schema.get("omics-file")
        columns = matrix["columns"] if matrix else _held_by(schema, "omics")
        if columns:
            source = (matrix.get("file", ""), matrix["id-column"]) if matrix else ("", "")
            holds[schema["site"]] = (tuple(columns), source)
    if len(set(holds.values())) > 1:
        raise ConfigError(
            "data.omics",
            f"differ between the sites that hold omics ({', '.join(sorted(holds))}): each must list the same columns, "
            "read from its table or from a matrix file of the same name keyed by the same id column",
        )
    if holds:
        columns, (file, id_column) = next(iter(holds.values()))
        data["omics"] = list(columns)
        if file:
            data["omics-file"], data["id-column"] = file, id_column
    return data


def _held_by(schema: dict[str, Any], role: str) -> list[str]:
    return [c for c, v in schema["columns"].items() if v["type"] == role]


def _held(schemas: dict[str, dict[str, Any]], role: str) -> dict[str, list[str]]:
    """Per column of that role, the sites holding it."""
    held: dict[str, list[str]] = {}
    for schema in schemas.values():
        for column in _held_by(schema, role):
            held.setdefault(column, []).append(schema["site"])
    return held


def _named(held: dict[str, list[str]]) -> str:
    return "; ".join(f"'{c}' at site(s) {', '.join(sorted(sites))}" for c, sites in sorted(held.items()))
