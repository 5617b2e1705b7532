"""A survival site's shareable schema and the study `[data]` sites agree on: the tabular schema's columns and
category labels, with the time and event columns named by role and never described (no value, no count)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from shared.config import MIN_CELL
from shared.errors import ConfigError
from shared.tasks.tabular.schema import FORMAT, VERSION, agreed_features, check_min_cell, column_schema


def survival_schema(
    table: pd.DataFrame,
    site: str,
    time: str,
    event: str,
    categorical: list[str] | None = None,
    min_cell: int = MIN_CELL,
) -> dict[str, Any]:
    """The site's feature columns with their types and category labels seen at least `min_cell` times, and the
    names of its time and event columns."""
    for key, column in (("data.time", time), ("data.event", event)):
        if column not in table.columns:
            raise ConfigError(key, f"column '{column}' is not in the table")
    check_min_cell(min_cell)
    columns = column_schema(table.drop(columns=[time, event]), list(categorical or []), min_cell)
    return {
        FORMAT: VERSION,
        "task": "survival",
        "site": site,
        "time": time,
        "event": event,
        "min-cell": min_cell,
        "columns": columns,
    }


def agreed_survival_data(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `[data]` of a survival study over these sites: the time and event columns every site names, the features
    and the categories (the union over sites); a disagreeing site is named, with its file and the column."""
    features = agreed_features(schemas, "survival", ("time", "event"))
    first = next(iter(schemas.values()))
    return {"time": first["time"], "event": first["event"], **features}
