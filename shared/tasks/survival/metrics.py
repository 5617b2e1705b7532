"""A site's survival metrics on its held-out split, from scikit-survival: Harrell's and Uno's C, the integrated Brier
score and time-dependent AUC at the study's horizons, and its Kaplan–Meier curve next to the model's mean prediction.

Only aggregates come out. A split with too few events is flagged (`c-index-unreliable` = 1) and its ranking metrics
left out, never reported as 0 or 1; a Kaplan–Meier value where few patients remain at risk is suppressed."""

from __future__ import annotations

import numpy as np

from shared.assessment import CURVE_POINTS, SUPPRESSED
from shared.errors import MedfedError
from shared.tasks.survival.curves import Predictions
from shared.tasks.survival.extra import sksurv
from shared.tasks.survival.spec import SurvivalSpec

IBS_POINTS = 20  # the integrated Brier score integrates over this many times spanning the study's horizons


def survival_metrics(
    spec: SurvivalSpec,
    outcome_train: np.ndarray,
    outcome_test: np.ndarray,
    predicted: Predictions,
    headline_only: bool = False,
) -> dict[str, float]:
    """Metrics of one site's predictions; the train split's outcomes give the censoring distribution (IPCW).
    `headline_only`: Harrell's C and the integrated Brier score alone (what a bootstrap replicate needs)."""
    metrics = sksurv("metrics")
    if not np.isfinite(predicted.risk).all():
        raise MedfedError("the model's risk scores are not finite (its training diverged): no metric to report")
    time, event = outcome_test[:, 0], outcome_test[:, 1] > 0.5
    out = {} if headline_only else _kaplan_meier(spec, time, event, predicted)
    if event.sum() < spec.min_test_events:
        return {**out, "c-index-unreliable": 1.0}
    try:
        out["c-index"] = float(metrics.concordance_index_censored(event, time, predicted.risk)[0])
    except sksurv("exceptions").NoComparablePairException:  # every event at or after the last follow-up time
        return {**out, "c-index-unreliable": 1.0}
    # IPCW estimates the censoring distribution from the train split, and it is zero past that split's last time:
    # the metrics use horizons inside both splits' follow-up, and held-out follow-up is cut (administratively
    # censored) between the last horizon and the train split's last time, which no metric up to that horizon sees.
    end = outcome_train[:, 0].max()
    usable = [h for h in spec.horizons if time.min() <= h < min(time.max(), end)]
    if not usable:
        return out
    cut = (usable[-1] + end) / 2
    train, test = _surv(outcome_train), _surv(np.stack([np.minimum(time, cut), event & (time <= cut)], axis=1))
    if not headline_only:
        out["uno-c-index"] = float(metrics.concordance_index_ipcw(train, test, predicted.risk, tau=usable[-1])[0])
        # A horizon's AUC needs a case (an event by then) and a control (still followed after it): undefined
        # otherwise, where scikit-survival divides by zero.
        cases = [h for h in usable if (event & (time <= h)).any()]
        if cases:
            at = {h: i for i, h in enumerate(predicted.times)}
            columns = [at[h] for h in cases]
            auc, _ = metrics.cumulative_dynamic_auc(train, test, 1 - predicted.survival[:, columns], cases)
            out.update({f"auc@{h:g}": float(a) for h, a in zip(cases, auc, strict=True)})
    if len(usable) > 1:
        grid = np.linspace(usable[0], usable[-1], IBS_POINTS)
        estimate = _interpolate(predicted, grid)
        out["integrated-brier"] = float(metrics.integrated_brier_score(train, test, estimate, grid))
    return out


def curve_times(spec: SurvivalSpec) -> np.ndarray:
    """The fixed grid a site's survival curves are released on: CURVE_POINTS equal steps up to the study's last
    horizon (else its last cut point); none without either."""
    end = spec.horizons[-1] if spec.horizons else spec.cut_points[-1] if spec.cut_points else 0.0
    return np.linspace(0.0, end, CURVE_POINTS + 1)[1:] if end else np.zeros(0)


def evaluation_times(spec: SurvivalSpec) -> np.ndarray:
    """The times a site predicts survival at: the horizons, the integrated Brier score's grid and the curves' grid."""
    times = np.union1d(spec.horizons, curve_times(spec))
    if len(spec.horizons) < 2:
        return times
    return np.union1d(times, np.linspace(spec.horizons[0], spec.horizons[-1], IBS_POINTS))


def survival_curves(spec: SurvivalSpec, outcome_test: np.ndarray, predicted: Predictions) -> dict[str, list[float]]:
    """The held-out split's Kaplan–Meier survival (SUPPRESSED where fewer than `km-min-at-risk` patients remain at
    risk) and the model's mean predicted survival on the curves' grid, for the report."""
    times = curve_times(spec)
    if not len(times):
        return {}
    km = kaplan_meier_at(outcome_test[:, 0], outcome_test[:, 1] > 0.5, times, spec.km_min_at_risk)
    at = {t: i for i, t in enumerate(predicted.times)}
    return {
        "curve-times": times.tolist(),
        "curve-km": np.where(np.isnan(km), SUPPRESSED, km).tolist(),
        "curve-predicted": predicted.survival[:, [at[t] for t in times]].mean(axis=0).tolist(),
    }


def kaplan_meier_at(time: np.ndarray, event: np.ndarray, times: np.ndarray, min_at_risk: int) -> np.ndarray:
    """The Kaplan–Meier survival at each of `times`; NaN where fewer than `min_at_risk` patients remain at risk."""
    km_times, km_survival = sksurv("nonparametric").kaplan_meier_estimator(event, time)
    passed = np.searchsorted(km_times, times, side="right")
    values = np.where(passed > 0, km_survival[np.maximum(passed - 1, 0)], 1.0)
    at_risk = (time[None, :] >= np.asarray(times)[:, None]).sum(axis=1)
    return np.where(at_risk >= min_at_risk, values, np.nan)


def _interpolate(predicted: Predictions, grid: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(grid, predicted.times, row) for row in predicted.survival])


def _kaplan_meier(spec: SurvivalSpec, time: np.ndarray, event: np.ndarray, predicted: Predictions) -> dict[str, float]:
    """The held-out split's Kaplan–Meier survival and the model's mean predicted survival at each horizon with at
    least `km-min-at-risk` patients still at risk."""
    km = kaplan_meier_at(time, event, np.asarray(spec.horizons, float), spec.km_min_at_risk)
    at = {t: i for i, t in enumerate(predicted.times)}
    out = {}
    for h, value in zip(spec.horizons, km, strict=True):
        if not np.isnan(value):
            out[f"km@{h:g}"] = float(value)
            out[f"predicted@{h:g}"] = float(predicted.survival[:, at[h]].mean())
    return out


def _surv(outcome: np.ndarray) -> np.ndarray:
    return sksurv("util").Surv.from_arrays(outcome[:, 1] > 0.5, outcome[:, 0])
