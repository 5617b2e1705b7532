"""From a survival model's outputs to each patient's risk score and survival probabilities at given times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.tasks.survival.extra import sksurv


@dataclass(frozen=True)
class Predictions:
    """Held-out patients' risk scores (higher: earlier event) and survival probabilities at `times`."""

    risk: np.ndarray  # (N,)
    survival: np.ndarray  # (N, len(times))
    times: np.ndarray


def cox_predictions(
    eta_train: np.ndarray, outcome_train: np.ndarray, eta_test: np.ndarray, times: np.ndarray
) -> Predictions:
    """Cox: the linear predictor is the risk; survival is S0(t)^exp(eta), with the site's own baseline S0 from its
    train split (Breslow's estimator), as a Cox model stratified by site has."""
    s0 = breslow_baseline(eta_train, outcome_train)
    # Beyond the site's last training time the baseline is unknown; it is held at its last value.
    return cox_survival(s0(np.clip(np.asarray(times, float), 0.0, s0.domain[1])), eta_test, times)


def cox_survival(baseline: np.ndarray, eta: np.ndarray, times: np.ndarray) -> Predictions:
    """Cox survival S0(t)^exp(eta) at `times`, from the baseline survival there (NaN stays NaN)."""
    return Predictions(eta, baseline[None, :] ** np.exp(eta)[:, None], times)


def breslow_baseline(eta_train: np.ndarray, outcome_train: np.ndarray) -> Any:
    """The Cox baseline survival S0 (a step function of time, defined up to the split's last time): Breslow's
    estimator on the site's train split with the model's linear predictor."""
    breslow = sksurv("linear_model.coxph").BreslowEstimator()
    breslow.fit(eta_train, outcome_train[:, 1] > 0.5, outcome_train[:, 0])
    return breslow.baseline_survival_


def discrete_predictions(hazard_logits: np.ndarray, cut_points: list[float], times: np.ndarray) -> Predictions:
    """Discrete-time: S at each cut point is the product of (1 - hazard) over the intervals up to it, with a
    constant hazard within an interval between cut points; the risk is minus the restricted mean survival time up to
    the last cut point."""
    cuts = np.asarray(cut_points, float)
    return Predictions(
        -restricted_mean(hazard_logits, cuts), discrete_survival(hazard_logits, cuts, times), np.asarray(times)
    )


def discrete_survival(hazard_logits: np.ndarray, cuts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Survival probabilities (N, len(times)) of the logistic-hazard model; flat past the last cut point."""
    log_keep = -np.logaddexp(0.0, hazard_logits)  # log(1 - sigmoid(logit)), stable
    edges = np.concatenate([[0.0], cuts])
    at_edges = np.concatenate([np.zeros((len(log_keep), 1)), np.cumsum(log_keep, axis=1)], axis=1)
    t = np.clip(np.asarray(times, float), 0.0, cuts[-1])
    k = np.clip(np.searchsorted(cuts, t), 0, len(cuts) - 1)  # the interval holding t
    share = (t - edges[k]) / (edges[k + 1] - edges[k])
    return np.exp(at_edges[:, k] + share * log_keep[:, k])


def restricted_mean(hazard_logits: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Expected survival time up to the last cut point, by the trapezoid rule over the cut points."""
    edges = np.concatenate([[0.0], cuts])
    s = discrete_survival(hazard_logits, cuts, edges)
    return ((s[:, 1:] + s[:, :-1]) / 2 * np.diff(edges)).sum(axis=1)
