"""The survival study schema every site shares: time and event columns, features, the time grid, the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared.config import MIN_CELL, StudyConfig, parse_section, raise_first
from shared.errors import ConfigError, DataError
from shared.tasks.tabular.spec import FeatureSpec, canonical, first_located, infer_feature_options, require_column

MODELS = ("cox", "discrete")
TIES = ("efron", "breslow")
TOO_FEW = ("refuse", "sit-out")
MIN_TEST_EVENTS = 5  # below this a held-out split's concordance is noise: flagged unreliable, not reported
KM_MIN_AT_RISK = 10  # a site's Kaplan–Meier value at a time with fewer patients at risk is suppressed
CUTS = 10  # intervals of the discrete-time model inferred from a table's event-time quantiles
MAX_CUT_POINTS = 200  # the discrete-time model's intervals
MAX_CUT_GRID_BINS = 1000  # the federated cut-point step's histogram: a site sends one count per bin
MAX_HORIZONS = 50
EVENT_CODES = {"0": 0, "1": 1, "False": 0, "True": 1}  # an event column's values, as read
NOT_EVENTS = "value(s) are not 0 (censored) or 1 (event observed)"
NOT_TIMES = "value(s) are not numbers (a follow-up time is a duration in one unit, such as days, not a date)"
INCREASING = "must be finite, positive and strictly increasing"  # cut points and horizons
HORIZON_QUANTILES = (0.25, 0.5, 0.75)  # of the follow-up times, when a table's horizons are inferred


@dataclass(frozen=True)
class SurvivalSpec(FeatureSpec):
    """`[data]` of a survival study: the features as for a table, the time and event (1 = observed, 0 = censored)
    columns, the discrete-time model's cut points and the horizons metrics are read at. For survival,
    `min-per-class` is the fewest training events a site needs (censored rows may be absent)."""

    time: str = ""
    event: str = ""
    cut_points: list[float] = field(default_factory=list)
    # Without cut points, the server computes them before round 1 from the sites' event-time histograms over
    # (0, cut-grid-max] in cut-grid-bins equal bins (later times count in the last bin): cut-intervals quantiles.
    cut_grid_max: float = 0.0
    cut_grid_bins: int = 100
    cut_intervals: int = CUTS
    horizons: list[float] = field(default_factory=list)
    min_test_events: int = MIN_TEST_EVENTS
    km_min_at_risk: int = KM_MIN_AT_RISK
    too_few: str = "refuse"  # a site with fewer train events than min-per-class: refused, or it sits training out

    def __post_init__(self) -> None:
        raise_first(
            [
                (not self.time, "data.time", "must name the follow-up time column"),
                (not self.event, "data.event", "must name the event column (1 = event observed, 0 = censored)"),
                (self.time == self.event, "data.event", "must be another column than data.time"),
                (
                    self.min_per_class < 1,
                    "data.min-per-class",
                    "must be at least 1 for survival (a site without events has an empty partial likelihood)",
                ),
                *self.feature_problems([self.time, self.event]),
                (not _increasing(self.cut_points), "data.cut-points", INCREASING),
                (not _increasing(self.horizons), "data.horizons", INCREASING),
                # A study comes from the server: its lists size the model and the sites' metric work.
                (len(self.cut_points) > MAX_CUT_POINTS, "data.cut-points", f"must be at most {MAX_CUT_POINTS}"),
                (len(self.horizons) > MAX_HORIZONS, "data.horizons", f"must be at most {MAX_HORIZONS}"),
                (not 0 <= self.cut_grid_max < math.inf, "data.cut-grid-max", "must be a finite time >= 0"),
                (
                    not 2 <= self.cut_grid_bins <= MAX_CUT_GRID_BINS,
                    "data.cut-grid-bins",
                    f"must be in [2, {MAX_CUT_GRID_BINS}]",
                ),
                (
                    not 1 <= self.cut_intervals <= min(MAX_CUT_POINTS, self.cut_grid_bins),
                    "data.cut-intervals",
                    "must be at least 1 and at most data.cut-grid-bins",
                ),
                (self.min_test_events < 1, "data.min-test-events", "must be at least 1"),
                (self.too_few not in TOO_FEW, "data.too-few", f"must be one of {', '.join(TOO_FEW)}"),
                # A Kaplan–Meier value leaves the site: small-cell suppression holds against any study.
                (
                    self.km_min_at_risk < MIN_CELL,
                    "data.km-min-at-risk",
                    f"must be at least {MIN_CELL} (small-cell suppression)",
                ),
            ]
        )
        self.check_categories()


@dataclass(frozen=True)
class SurvivalModelSpec:
    """`[model]` of a survival study: a Cox risk or a discrete-time logistic hazard, linear or an MLP."""

    name: str = "cox"
    hidden: list[int] = field(default_factory=list)  # empty: linear; widths: an MLP (DeepSurv for Cox)
    dropout: float = 0.1
    ties: str = "efron"  # Cox only
    proportional: bool = False  # discrete only: one risk shared by every interval, plus a baseline logit each

    def __post_init__(self) -> None:
        raise_first(
            [
                (self.name not in MODELS, "model.name", f"must be one of {', '.join(MODELS)}"),
                (
                    any(not isinstance(h, int) or h < 1 for h in self.hidden),
                    "model.hidden",
                    "must list positive widths",
                ),
                (not 0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)"),
                (self.ties not in TIES, "model.ties", f"must be one of {', '.join(TIES)}"),
            ]
        )


def data_spec(study: StudyConfig) -> SurvivalSpec:
    """Parse and validate the study's `[data]` section."""
    return parse_section(SurvivalSpec, study.data, "data.")


def model_spec(study: StudyConfig) -> SurvivalModelSpec:
    """Parse and validate the study's `[model]` section."""
    return parse_section(SurvivalModelSpec, study.model, "model.")


def check_survival_study(study: StudyConfig) -> None:
    """Validate `[data]` and `[model]` together: the discrete model needs cut points, and Cox cannot take local DP."""
    data, model = data_spec(study), model_spec(study)
    if model.name == "discrete" and not data.cut_points and not data.cut_grid_max:
        raise ConfigError(
            "data.cut-points",
            "must list the discrete-time model's interval ends, agreed for the whole study (medfed-sim fills them from "
            "your table's event-time quantiles), or set data.cut-grid-max for the server to compute them from the "
            "sites' event-time histograms before round 1",
        )
    if model.name == "cox" and study.privacy.mode == "local":
        raise ConfigError(
            "privacy.mode",
            "'local' cannot train model.name = 'cox': its partial likelihood couples the patients of a batch (each "
            "event's term divides by a sum over everyone still at risk), so one patient's record changes the other "
            "patients' terms and clipping each patient's gradient does not bound what that patient contributes; use "
            "model.name = 'discrete' (a logistic hazard over data.cut-points, whose loss is a sum over patients) for "
            "local DP",
        )


def infer_survival_options(
    table: pd.DataFrame,
    time: str,
    event: str,
    categorical: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Fill features, category lists, cut points and horizons from a table the data scientist holds (simulation)."""
    require_column(table, time, "data.time")
    require_column(table, event, "data.event")
    times = pd.to_numeric(table[time], errors="coerce")
    codes = event_codes(table[event])
    checks = ((time, times.isna() & table[time].notna(), NOT_TIMES), (event, codes.isna(), NOT_EVENTS))
    for column, bad, problem in checks:
        if bad.any():
            site, row = first_located(bad)
            raise DataError(site, f"{int(bad.sum())} {problem}, first at data row {row}", column=column)
    observed = times[codes == 1].dropna()
    if observed.empty:
        raise ConfigError("data.event", f"column '{event}' marks no event (1) with a time: nothing to model")
    return {
        "time": time,
        "event": event,
        **infer_feature_options(table, [time, event, *(exclude or [])], categorical),
        "cut-points": event_time_cuts(observed.to_numpy(float)),
        "horizons": rounded_times(np.quantile(times.dropna(), HORIZON_QUANTILES)),
    }


def event_codes(values: pd.Series) -> pd.Series:
    """An event column read as 1 (event observed) or 0 (censored); NaN where a value is neither (or missing)."""
    return values.map(lambda v: EVENT_CODES.get(canonical(v)) if pd.notna(v) else None).astype(float)


def event_time_cuts(event_times: np.ndarray, intervals: int = CUTS) -> list[float]:
    """Interval ends at event-time quantiles (each interval holds about as many events), the last at the latest."""
    return rounded_times(np.quantile(event_times, quantile_levels(intervals)))


def quantile_levels(intervals: int) -> np.ndarray:
    """The quantiles whose times end `intervals` intervals of about equal events: 1/K, 2/K, ..., 1."""
    return np.linspace(0, 1, intervals + 1)[1:]


def rounded_times(values: np.ndarray) -> list[float]:
    """Three significant digits, positive and without repeats, so a study file reads well."""
    return sorted({float(f"{v:.3g}") for v in values if v > 0})


def _increasing(values: list[float]) -> bool:
    return all(isinstance(v, int | float) and 0 < v < math.inf for v in values) and all(
        a < b for a, b in zip(values, values[1:], strict=False)
    )
