"""Tabular task: a site's CSV/Parquet table, logistic regression or MLP, binary/multi-class metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks.base import NewInputs, SiteData, Task
from shared.tasks.tabular import demo
from shared.tasks.tabular.data import encode_new_rows, load_tabular_site
from shared.tasks.tabular.model import build_tabular_model
from shared.tasks.tabular.schema import agreed_data, site_choices, table_schema, without_split
from shared.tasks.tabular.spec import data_spec, infer_data_options, local_dp_notes, model_spec, split_columns
from shared.tasks.tabular.table import read_with_options


class TabularTask(Task):
    """Patient records in a table, one row per patient."""

    name = "tabular"
    keeps_statistics = True

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`."""
        data_spec(study)
        model_spec(study)

    def study_notes(self, study: StudyConfig) -> list[str]:
        """Under local DP, the site statistics its ε does not cover."""
        return local_dp_notes(study, data_spec(study).site_statistics())

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """Features, classes and category lists of a table; `hints` must name the `label` column."""
        if "label" not in hints:
            raise ConfigError("data.label", "must name the label column of a table")
        table = read_with_options(path, site, hints).frame
        categorical = hints.get("categorical")  # a list of column names here; the section holds their categories
        inferred = infer_data_options(
            table, hints["label"], list(categorical) if categorical is not None else None, split_columns(hints)
        )
        return {**inferred, **{k: v for k, v in hints.items() if k != "categorical"}}

    def schema(self, path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
        """The table's columns and types, and the label's and categorical columns' labels seen often enough."""
        if "label" not in hints:
            raise ConfigError("data.label", "must name the label column of a table")
        table = without_split(read_with_options(path, site, hints).frame, hints)
        categorical = hints.get("categorical")
        return table_schema(table, site, hints["label"], list(categorical or []), min_cell) | site_choices(hints)

    def study_template(self, schemas: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """The label, classes, features and categories the sites agree on."""
        advice = (
            "# Review the classes (class 1 is the positive class), then add [privacy] and [model] as the\n"
            "# README's study config shows.\n"
        )
        return agreed_data(schemas), advice

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read and split the site's table."""
        return load_tabular_site(path, site, data_spec(study), study.seed)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New rows encoded with the agreed categories and the site's own kept statistics."""
        return encode_new_rows(path, site, data_spec(study), kept, id_column)

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Standardised-looking encoded rows."""
        return torch.randn(n, data_spec(study).n_inputs)

    def class_names(self, study: StudyConfig) -> list[str]:
        """The label's agreed classes."""
        return data_spec(study).class_names

    def build_model(self, study: StudyConfig) -> nn.Module:
        """Logistic regression or MLP sized from the agreed schema."""
        spec = data_spec(study)
        return build_tabular_model(spec.n_inputs, len(spec.classes), model_spec(study))

    def demo_study(self) -> StudyConfig:
        """Wisconsin breast cancer study."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Breast cancer patients split non-IID, one CSV per hospital."""
        return demo.write_demo_sites(folder, n_sites, seed=2)


TASK = TabularTask()
