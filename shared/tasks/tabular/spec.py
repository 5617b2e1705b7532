"""The tabular study schema every site shares: label, classes, features and agreed category lists."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from shared.config import StudyConfig, parse_section, raise_first
from shared.errors import ConfigError, DataError, MedfedError
from shared.tasks.size import SiteSize
from shared.tasks.tabular.table import DECIMALS, DELIMITERS

# A numeric column's name that says it counts rows or patients rather than measuring them: `id`, `patient_id`,
# `PatientID`, `mrn`, `pid`, `index`, and `Unnamed: 0` (pandas' index, written by `to_csv` by default).
ID_NAME = re.compile(r"(?i)^(id|index|mrn|pid|unnamed: ?\d+)$|[_ .-](id|mrn)$|(?-i:[a-z](Id|ID))$")

STRAY_SHARE = 10  # a column whose non-numeric cells are at most 1 in this many is numbers with stray cells

MISSING_POLICIES = ("drop", "impute")
LABEL_TYPES = ("binary", "categorical")
MODELS = ("logreg", "mlp")
RARE_LABEL = 20  # a label value this many times rarer than the median value is more likely a code than a class


@dataclass(frozen=True)
class FeatureSpec(SiteSize):
    """The feature part of a table's `[data]`, shared by every task that reads a table: feature columns, agreed
    category lists, missing values, the held-out split and scaling. Categories are strings, so 1, 1.0 and "1" agree."""

    features_optional: ClassVar[bool] = False  # a multimodal study may have no record columns
    features: list[str] = field(default_factory=list)
    categorical: dict[str, list[Any]] = field(default_factory=dict)
    missing: str = "drop"
    na_values: list[str] = field(default_factory=lambda: ["?"])
    delimiter: str = ""  # empty: sniffed from each site's file
    decimal: str = ""  # empty: sniffed ("," only in a file not separated by commas)
    test_fraction: float = 0.2
    split_seed: int = -1
    split_column: str = ""  # a column of train/test values: a published benchmark's static split, used as given
    drop_first: bool = False
    standardize: bool = True
    # Study-stated scaling, `{column = [center, scale]}`: every site encodes the column as (value - center) / scale
    # instead of with its own statistics, so the encoding depends on no site's rows (README "What ε covers").
    scale: dict[str, list[float]] = field(default_factory=dict)

    def feature_problems(self, targets: list[str]) -> list[tuple[bool, str, str]]:
        """The feature settings' checks, as (bad, field, problem) for `raise_first`; `targets` are the outcome
        columns, which must not be features."""
        clash = [t for t in targets if t in self.features]
        return [
            (
                not self.features and not self.features_optional,
                "data.features",
                "must list the feature columns (medfed-sim fills it from your "
                "table; a federation's study config states it)",
            ),
            (bool(clash), "data.features", f"must not include the outcome column '{clash[0] if clash else ''}'"),
            (
                bool(self.split_column) and self.split_column in [*targets, *self.features],
                "data.split-column",
                "must be another column than the outcome and the features",
            ),
            (self.missing not in MISSING_POLICIES, "data.missing", f"must be one of {', '.join(MISSING_POLICIES)}"),
            (not 0 < self.test_fraction < 1, "data.test-fraction", "must be in (0, 1)"),
            (
                self.delimiter not in ("", *DELIMITERS),
                "data.delimiter",
                f"must be one of {', '.join(map(repr, DELIMITERS))}, or empty to sniff it from the file",
            ),
            (self.decimal not in ("", *DECIMALS), "data.decimal", "must be '.' or ',', or empty to sniff it"),
            (self.decimal and self.decimal == self.delimiter, "data.decimal", "must differ from data.delimiter"),
            *self.size_problems(),
            *self.scale_problems(),
        ]

    def scale_problems(self) -> list[tuple[bool, str, str]]:
        """Each `data.scale` entry names a numeric feature and gives a finite center and a positive finite scale."""
        problems = []
        for column, pair in self.scale.items():
            numbers = [v for v in pair if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
            problems += [
                (column not in self.numeric, f"data.scale.{column}", "must name a numeric column of data.features"),
                (
                    len(pair) != 2 or len(numbers) != 2 or numbers[1] <= 0,
                    f"data.scale.{column}",
                    f"must be [center, scale], two finite numbers with scale > 0, got {pair!r}",
                ),
            ]
        return problems

    def check_categories(self) -> None:
        """Every categorical column is a feature with a non-empty agreed category list."""
        for column, values in self.categorical.items():
            if column not in self.features:
                raise ConfigError(f"data.categorical.{column}", "is not among data.features")
            if not isinstance(values, list) or len(values) < 1:
                raise ConfigError(f"data.categorical.{column}", "must list the column's agreed categories")

    def category_names(self, column: str) -> list[str]:
        """Agreed categories of a column as canonical strings."""
        return [canonical(v) for v in self.categorical[column]]

    def site_statistics(self) -> list[str]:
        """What each site computes from its own train rows to prepare them, outside any DP accounting; nothing when the
        study states the preparation (no standardisation, or its own scale for every numeric column; rows dropped)."""
        own = [c for c in self.numeric if c not in self.scale] if self.standardize else []
        out = []
        if own:
            out.append(
                f"the means and SDs of its {len(own)} standardised numeric feature(s) (data.standardize = false, with "
                "data.scale = {column = [center, scale]} where a column needs scaling, states them in the study)"
            )
        if self.missing == "impute":
            out.append('the medians and modes it imputes missing values with (data.missing = "drop" takes none)')
        return out

    @property
    def numeric(self) -> list[str]:
        """Feature columns read as numbers."""
        return [c for c in self.features if c not in self.categorical]

    @property
    def n_inputs(self) -> int:
        """Width of the encoded feature vector, the same at every site."""
        dropped = 1 if self.drop_first else 0
        return len(self.numeric) + sum(len(v) - dropped for v in self.categorical.values())


@dataclass(frozen=True)
class TabularSpec(FeatureSpec):
    """`[data]` of a tabular study: the features, plus the label and its classes."""

    label: str = ""
    label_type: str = "binary"
    classes: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        problems = [
            (not self.label, "data.label", "must name the label column"),
            (self.label_type not in LABEL_TYPES, "data.label-type", f"must be one of {', '.join(LABEL_TYPES)}"),
            (len(self.classes) < 2, "data.classes", "must list at least two label values agreed for the study"),
            (
                self.label_type == "binary" and len(self.classes) != 2,
                "data.classes",
                f"must list exactly two values for a binary label, got {len(self.classes)}",
            ),
            *self.feature_problems([self.label]),
        ]
        raise_first(problems)
        self.check_categories()

    @property
    def class_names(self) -> list[str]:
        """Label values as canonical strings; index i is class i (index 1 is positive when binary)."""
        return [canonical(v) for v in self.classes]


@dataclass(frozen=True)
class TabularModelSpec:
    """`[model]` of a tabular study."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ConfigError("model.name", f"must be one of {', '.join(MODELS)}")
        if any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError("model.hidden", "must list positive layer widths")
        if not 0 <= self.dropout < 1:
            raise ConfigError("model.dropout", "must be in [0, 1)")


def local_dp_notes(study: StudyConfig, statistics: list[str]) -> list[str]:
    """Under local DP, the statistics a site prepares its rows with, which its ε does not cover (for `validate`)."""
    if study.privacy.mode != "local" or not statistics:
        return []
    return [
        "under local DP, ε covers each site's training steps, not the statistics of its own train split it prepares "
        "its rows with: " + "; ".join(statistics) + " (README, 'What ε covers')"
    ]


def data_spec(study: StudyConfig) -> TabularSpec:
    """Parse and validate the study's `[data]` section."""
    return parse_section(TabularSpec, study.data, "data.")


def model_spec(study: StudyConfig) -> TabularModelSpec:
    """Parse and validate the study's `[model]` section."""
    return parse_section(TabularModelSpec, study.model, "model.")


def split_columns(hints: dict[str, Any]) -> list[str]:
    """The hints' `split-column`, as the columns a table's inferred features leave out."""
    return [hints["split-column"]] if hints.get("split-column") else []


def canonical(value: Any) -> str:
    """One string form for a label or category value: 1, 1.0 and '1' all become '1'."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def infer_data_options(
    table: pd.DataFrame,
    label: str,
    categorical: list[str] | None = None,
    exclude: list[str] | None = None,
    max_categories: int = 20,
) -> dict[str, Any]:
    """Fill features, classes and category lists from a table the data scientist holds (simulation only)."""
    require_column(table, label, "data.label")
    classes = list(label_counts(table[label]))
    return {
        "label": label,
        "label-type": "binary" if len(classes) == 2 else "categorical",
        "classes": classes,
        **infer_feature_options(table, [label, *(exclude or [])], categorical, max_categories),
    }


def infer_feature_options(
    table: pd.DataFrame, exclude: list[str], categorical: list[str] | None = None, max_categories: int = 20
) -> dict[str, Any]:
    """Features (every column not excluded) and the categorical ones' category lists, from a table (simulation only)."""
    features = [str(c) for c in table.columns if c not in set(exclude)]
    if categorical is None:
        categorical = [c for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    categories = {}
    for column in categorical:
        values = sorted({canonical(v) for v in table[column].dropna()})
        if len(values) > max_categories:
            raise _too_many_values(table[column], column, len(values))
        categories[column] = values
    return {"features": features, "categorical": categories}


def located(entry: Any) -> tuple[str | None, int]:
    """A row's site and 1-based data row from its index entry in a table as read (a folder of sites' tables is
    stacked with (site, row) entries); no site for one file."""
    site, row = entry if isinstance(entry, tuple) else (None, entry)
    return site, int(row) + 1


def first_located(mask: pd.Series) -> tuple[str | None, int]:
    """The site and 1-based data row of the first True in a mask over a table's rows."""
    return located(mask.index[mask.to_numpy()][0])


def _too_many_values(cells: pd.Series, column: str, n_values: int) -> MedfedError:
    """Why a column has too many labels to be categorical: numbers with a few stray cells (a typo, a code for
    missing), counted and the first located (never shown: a cell may hold anything); or free text, which the study
    must list or leave out."""
    present = cells.dropna()
    stray = present[pd.to_numeric(present, errors="coerce").isna()]
    if len(stray) * STRAY_SHARE <= len(present):
        site, row = located(stray.index[0])
        return DataError(
            site,
            f"holds numbers but for {len(stray)} cell(s) that are not, first at data row {row}: correct "
            "them, or make them mean missing (--na-values; a site's na-values)",
            column=column,
        )
    return ConfigError(
        f"data.categorical.{column}",
        f"has {n_values} distinct values; list it as a feature with an explicit category list, or leave it out",
    )


def identifier_columns(table: pd.DataFrame, exclude: list[str], max_categories: int = 20) -> list[str]:
    """Columns with a different value on every row and too many for categories: text (a patient or record id, free
    text), or whole numbers under an identifier's name (`patient_id`, `mrn`, pandas' written index `Unnamed: 0`).
    Never features (simulation only)."""
    return [
        str(c)
        for c in table.columns
        if c not in set(exclude)
        and table[c].nunique() > max_categories
        and table[c].dropna().is_unique
        and (not pd.api.types.is_numeric_dtype(table[c]) or _numbered_id(str(c), table[c]))
    ]


def _numbered_id(name: str, values: pd.Series) -> bool:
    """A numeric column named as an identifier and holding whole numbers only."""
    present = values.dropna()
    return bool(ID_NAME.search(name)) and bool((present == present.round()).all())


def require_column(table: pd.DataFrame, column: str, name: str) -> None:
    """Raise ConfigError naming the study field when the table the data scientist holds lacks a column."""
    if column not in table.columns:
        raise ConfigError(
            name, f"column '{column}' is not in the table (columns: {', '.join(map(str, table.columns))})"
        )


def label_counts(values: pd.Series) -> dict[str, int]:
    """Rows per label value (canonical strings, sorted: the inferred class order), missing labels left out."""
    counts = values.dropna().map(canonical).value_counts()
    return {name: int(counts[name]) for name in sorted(counts.index)}


def rare_label_values(counts: dict[str, int]) -> list[str]:
    """Values of a label with three or more values that are far rarer than the others (`unknown` beside yes/no):
    more likely a code for missing than a class of its own."""
    if len(counts) < 3:
        return []
    median = sorted(counts.values())[len(counts) // 2]
    return [name for name, n in counts.items() if n * RARE_LABEL <= median]
