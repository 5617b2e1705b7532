"""Cox partial likelihood (ties) against a hand computation and lifelines' and scikit-survival's fits; the
discrete-time hazard against Kaplan–Meier; per-patient gradients of the discrete-time loss."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter
from opacus import GradSampleModule

from shared.tasks.survival.curves import discrete_survival
from shared.tasks.survival.loss import CoxPartialLikelihood, LogisticHazardLikelihood

sksurv_linear = pytest.importorskip("sksurv.linear_model")
sksurv_np = pytest.importorskip("sksurv.nonparametric")

TIME = [1.0, 2.0, 2.0, 3.0, 4.0]
EVENT = [1.0, 1.0, 1.0, 0.0, 1.0]
ETA = [0.1, -0.2, 0.3, 0.5, -0.1]


def _outcome(time, event) -> torch.Tensor:
    return torch.tensor(np.stack([time, event], axis=1), dtype=torch.float64)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_partial_likelihood_with_tied_events_matches_the_hand_computation(ties):
    e = [math.exp(v) for v in ETA]
    at_1 = sum(e)  # everyone is at risk at t = 1
    at_2 = e[1] + e[2] + e[3] + e[4]  # two tied events at t = 2
    tied = e[1] + e[2]
    second = at_2 - tied / 2 if ties == "efron" else at_2  # Efron removes half the tied risk for the second event
    by_hand = (ETA[0] - math.log(at_1)) + (ETA[1] + ETA[2] - math.log(at_2) - math.log(second)) + 0.0  # t=4: alone
    shuffle = [3, 0, 4, 2, 1]  # input order must not matter
    eta = torch.tensor(ETA, dtype=torch.float64)[shuffle].unsqueeze(1)
    outcome = _outcome(np.array(TIME)[shuffle], np.array(EVENT)[shuffle])
    loss = CoxPartialLikelihood(ties, reduction="sum")(eta, outcome)
    assert float(loss) == pytest.approx(-by_hand, rel=1e-12)
    per_patient = CoxPartialLikelihood(ties, reduction="none")(eta, outcome)
    assert float(per_patient.sum()) == pytest.approx(-by_hand, rel=1e-12)
    assert float(per_patient[0]) == 0.0  # the censored patient has no term of their own


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_pooled_linear_cox_fit_matches_lifelines_and_scikit_survival(ties):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 3))
    time = np.ceil(rng.exponential(np.exp(-x @ [0.8, -0.5, 0.0])) * 5)  # whole numbers: many ties
    event = rng.random(150) < 0.7
    references = [sksurv_linear.CoxPHSurvivalAnalysis(ties=ties).fit(x, sksurv_np_surv(event, time)).coef_]
    if ties == "efron":  # lifelines' CoxPHFitter handles ties by Efron's method only
        table = pd.DataFrame(x, columns=["a", "b", "c"]).assign(time=time, event=event.astype(int))
        fitted = CoxPHFitter().fit(table, duration_col="time", event_col="event")
        references.append(fitted.params_[["a", "b", "c"]].to_numpy())
    beta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    xt, outcome = torch.from_numpy(x), _outcome(time, event.astype(float))
    loss_fn = CoxPartialLikelihood(ties, reduction="sum")
    optimizer = torch.optim.LBFGS([beta], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn((xt @ beta).unsqueeze(1), outcome)
        loss.backward()
        return loss

    optimizer.step(closure)
    for reference in references:
        np.testing.assert_allclose(beta.detach().numpy(), reference, atol=1e-4)


def sksurv_np_surv(event, time):
    """scikit-survival's structured outcome array."""
    from sksurv.util import Surv

    return Surv.from_arrays(event, time)


def test_discrete_time_survival_without_covariates_follows_kaplan_meier():
    rng = np.random.default_rng(0)
    n = 4000
    event_time, censor_time = rng.exponential(10.0, n), rng.uniform(0, 30, n)
    time, event = np.minimum(event_time, censor_time), event_time <= censor_time
    cuts = list(np.quantile(time[event], np.linspace(0, 1, 21)[1:]))
    logits = torch.zeros(1, len(cuts), dtype=torch.float64, requires_grad=True)
    loss_fn, outcome = LogisticHazardLikelihood(cuts), _outcome(time, event.astype(float))
    optimizer = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(logits.expand(n, -1), outcome)
        loss.backward()
        return loss

    optimizer.step(closure)
    model = discrete_survival(logits.detach().numpy(), np.array(cuts), np.array(cuts))[0]
    km_times, km = sksurv_np.kaplan_meier_estimator(event, time)
    at_cuts = km[np.searchsorted(km_times, cuts, side="right") - 1]
    # Within 0.001 wherever at least 5 % of patients remain at risk; the tail (a handful at risk) differs by the
    # midpoint rule for censoring inside an interval.
    followed = np.array([(time >= c).sum() for c in cuts]) >= n // 20
    assert followed.sum() >= 15 and np.abs(model - at_cuts)[followed].max() < 1e-3


def test_discrete_time_loss_is_a_sum_over_patients_so_per_patient_clipping_is_exact():
    torch.manual_seed(0)
    cuts = [1.0, 2.0, 3.0]
    model = torch.nn.Linear(2, 3)
    x = torch.randn(6, 2)
    outcome = torch.tensor([[0.5, 1], [1.5, 0], [2.5, 1], [3.5, 0], [1.2, 1], [2.9, 0]])
    private = GradSampleModule(model)
    LogisticHazardLikelihood(cuts)(private(x), outcome).backward()
    for i in range(len(x)):
        alone = torch.nn.Linear(2, 3)
        alone.load_state_dict(model.state_dict())
        LogisticHazardLikelihood(cuts)(alone(x[i : i + 1]), outcome[i : i + 1]).backward()
        # Opacus's per-sample gradient of a mean loss is the patient's own gradient: nobody else's record enters it.
        torch.testing.assert_close(model.weight.grad_sample[i], alone.weight.grad)
        torch.testing.assert_close(model.bias.grad_sample[i], alone.bias.grad)


def test_cox_loss_couples_patients_which_is_why_local_dp_refuses_it():
    eta = torch.tensor([[0.1], [0.2], [0.3]], requires_grad=True)
    outcome = torch.tensor([[1.0, 1.0], [2.0, 0.0], [3.0, 0.0]])
    CoxPartialLikelihood(reduction="none")(eta, outcome)[0].backward()
    # Patient 0's term moves with the censored patients 1 and 2, whose records sit in its risk set.
    assert (eta.grad[1:] != 0).all()
