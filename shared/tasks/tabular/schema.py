"""A site's shareable table schema (columns, types, category labels) and the study `[data]` that sites agree on.

A schema holds no count and no value beyond category labels, and a label seen fewer than `min-cell` times at the
site is left out, so that a rare category (a rare diagnosis, a small hospital's code) cannot single out patients;
the schema says only whether a column had such labels, so that the study's authors know its list is incomplete.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from shared.config import MIN_CELL
from shared.errors import ConfigError
from shared.tasks.tabular.spec import canonical, split_columns

FORMAT = "medfed-schema"
VERSION = 1


def table_schema(
    table: pd.DataFrame, site: str, label: str, categorical: list[str] | None = None, min_cell: int = MIN_CELL
) -> dict[str, Any]:
    """The site's columns with their types; for the label and each categorical column, the labels seen at least
    `min_cell` times. Non-numeric columns are categorical, as are the numeric ones named in `categorical`."""
    if label not in table.columns:
        raise ConfigError("data.label", f"column '{label}' is not in the table")
    check_min_cell(min_cell)
    columns = column_schema(table, [label, *(categorical or [])], min_cell)
    return {FORMAT: VERSION, "task": "tabular", "site": site, "label": label, "min-cell": min_cell, "columns": columns}


def column_schema(table: pd.DataFrame, categorical: list[str], min_cell: int) -> dict[str, dict[str, Any]]:
    """Each column's type and, for a categorical one (non-numeric, or named in `categorical`), its labels seen at
    least `min_cell` times."""
    columns: dict[str, dict[str, Any]] = {}
    for name in map(str, table.columns):
        values = table[name]
        if name not in categorical and pd.api.types.is_numeric_dtype(values):
            columns[name] = {"type": "numeric"}
            continue
        seen = values.dropna().map(canonical).value_counts()
        columns[name] = {
            "type": "categorical",
            "categories": sorted(str(v) for v, n in seen.items() if n >= min_cell),
            "rare-left-out": bool((seen < min_cell).any()),  # whether, never which or how many
        }
    return columns


def site_choices(hints: dict[str, Any]) -> dict[str, Any]:
    """What a schema carries of the site's own data settings, which a study must agree with: how it treats a missing
    value (`missing`) and the column holding a published benchmark's static split (`split-column`)."""
    return {key: hints[key] for key in ("missing", "split-column") if hints.get(key)}


def without_split(table: pd.DataFrame, hints: dict[str, Any]) -> pd.DataFrame:
    """The table without the site's split column: it says which rows train, it is no feature."""
    return table.drop(columns=split_columns(hints), errors="ignore")


def check_min_cell(min_cell: int) -> None:
    """A small-cell threshold must be at least 1."""
    if min_cell < 1:
        raise ConfigError("min-cell", "must be at least 1")


def rare_left_out(schemas: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per column, the sites whose schema left rare labels out: their rows with those labels do not fit the study."""
    out: dict[str, list[str]] = {}
    for schema in schemas.values():
        for column, spec in schema["columns"].items():
            if spec.get("rare-left-out"):
                out.setdefault(column, []).append(schema["site"])
    return {column: sorted(sites) for column, sites in sorted(out.items())}


def imputing_sites(schemas: dict[str, dict[str, Any]]) -> list[str]:
    """The sites whose site.toml imputes missing feature values (`missing = "impute"`) rather than dropping rows."""
    return sorted(s["site"] for s in schemas.values() if s.get("missing") == "impute")


def agreed_data(schemas: dict[str, dict[str, Any]], task: str = "tabular") -> dict[str, Any]:
    """The `[data]` of a study over these sites (schemas by source file): the label, its classes, the features and
    each categorical column's categories (the union over sites). Sites that disagree on the label, a column's
    presence or its type are refused, naming the site, the file and the column."""
    features = agreed_features(schemas, task, ("label",))
    label = next(iter(schemas.values()))["label"]
    classes = _union(schemas, label)
    if len(classes) < 2:
        raise ConfigError(f"columns.{label}", "lists fewer than two label values seen often enough at any site")
    return {
        "label": label,
        "label-type": "binary" if len(classes) == 2 else "categorical",
        "classes": classes,
        **features,
    }


def agreed_features(schemas: dict[str, dict[str, Any]], task: str, outcome: tuple[str, ...]) -> dict[str, Any]:
    """The features and categories of a `task` study over these sites: every schema must be that task's and name the
    same `outcome` columns (its keys: "label", or "time" and "event"), and the sites must agree on each column's
    presence and type; a categorical column's categories are the union over sites, and one with none is left out.
    The study imputes missing values when any site's site.toml does, and uses the sites' split column if they name
    one (all the same)."""
    if not schemas:
        raise ConfigError("schema", "give at least one site's schema file")
    for source, schema in schemas.items():
        if schema.get(FORMAT) != VERSION or schema.get("task") != task or "columns" not in schema:
            raise ConfigError("schema", f"is not a {task} schema from `medfed-site check --schema-out`", source)
    (first_source, first), *others = schemas.items()
    for source, schema in others:
        where = f"site '{schema['site']}' ({source}) and site '{first['site']}' ({first_source})"
        for key in outcome:
            if schema[key] != first[key]:
                raise ConfigError(key, f"differs: {where} name '{schema[key]}' and '{first[key]}'", source)
        for column in sorted(set(first["columns"]) ^ set(schema["columns"])):
            has, lacks = (first, schema) if column in first["columns"] else (schema, first)
            problem = f"is at site '{has['site']}' but not at site '{lacks['site']}' ({where})"
            raise ConfigError(f"columns.{column}", problem, source)
        for column, spec in schema["columns"].items():
            if spec["type"] != first["columns"][column]["type"]:
                problem = (
                    f"is {spec['type']} at site '{schema['site']}' but {first['columns'][column]['type']} at site "
                    f"'{first['site']}' ({where})"
                )
                raise ConfigError(f"columns.{column}", problem, source)
    splits = {s["site"]: s.get("split-column", "") for s in schemas.values()}
    if len(set(splits.values())) > 1:
        named = ", ".join(f"'{site}' {column or 'none'}" for site, column in sorted(splits.items()))
        raise ConfigError("split-column", f"differs between sites ({named}): a study splits every site alike")
    split = next(iter(splits.values()))
    features = [c for c in first["columns"] if c != first.get("label")]
    categorical = {c: _union(schemas, c) for c in features if first["columns"][c]["type"] == "categorical"}
    return {
        **({"missing": "impute"} if imputing_sites(schemas) else {}),
        **({"split-column": split} if split else {}),
        "features": [c for c in features if c not in categorical or categorical[c]],
        "categorical": {c: cats for c, cats in categorical.items() if cats},
    }


def _union(schemas: dict[str, dict[str, Any]], column: str) -> list[str]:
    return sorted({c for s in schemas.values() for c in s["columns"][column]["categories"]})
