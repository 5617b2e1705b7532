"""Survival losses: Cox's negative partial log-likelihood (Efron or Breslow ties) and the discrete-time logistic
hazard's negative log-likelihood. Outcomes arrive as rows of [time, event]."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

REDUCTIONS = ("mean", "sum", "none")


class CoxPartialLikelihood(nn.Module):
    """Negative Cox partial log-likelihood of a batch: its risk sets are the batch's patients still at risk.

    `reduction = "none"` gives each patient's own term (0 when censored); "mean" divides the sum by the events.
    """

    def __init__(self, ties: str = "efron", reduction: str = "mean") -> None:
        super().__init__()
        self.ties, self.reduction = ties, reduction

    def forward(self, risk: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        """The loss of risk scores (N, 1) against outcomes (N, 2)."""
        event = outcome[:, 1].to(risk.dtype)
        terms = -cox_log_likelihood_terms(risk.reshape(-1), outcome[:, 0], event, self.ties)
        if self.reduction == "none":
            return terms
        if self.reduction == "sum":
            return terms.sum()
        return terms.sum() / event.sum().clamp(min=1)


def cox_log_likelihood_terms(eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str) -> torch.Tensor:
    """Each patient's term of the partial log-likelihood, in input order: for an event at time t,
    eta_i - log(sum over T_j >= t of exp(eta_j) - r_i/d * sum over the d events tied at t of exp(eta_j)), with r_i the
    patient's rank among those d events under Efron (0 under Breslow); 0 for a censored patient."""
    order = torch.argsort(time, descending=True, stable=True)
    t, e, h = time[order], event[order], eta[order]
    _, group, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0) - 1  # each tied-time group's last position: its risk set ends there
    shift = h.max().detach()  # exp(eta - max) cannot overflow; the shift cancels in each term
    w = torch.exp(h - shift)
    at_risk = torch.cumsum(w, 0)[last][group]
    if ties == "efron":
        groups = counts.numel()
        tied = torch.zeros(groups, dtype=w.dtype, device=w.device).index_add(0, group, w * e)[group]
        events = torch.zeros(groups, dtype=w.dtype, device=w.device).index_add(0, group, e)
        seen = torch.cumsum(e, 0)
        before = (seen[last] - events)[group]  # events in earlier groups
        rank = seen - e - before
        at_risk = at_risk - rank / events[group].clamp(min=1) * tied
    terms = e * (h - shift - torch.log(at_risk))
    return torch.empty_like(terms).index_copy(0, order, terms)


class LogisticHazardLikelihood(nn.Module):
    """Negative log-likelihood of the discrete-time logistic hazard over intervals (0, c1], (c1, c2], ...: one
    binary term per interval a patient was at risk in, so the loss is a sum of independent per-patient terms.

    A patient censored in an interval counts as at risk in it when censored past its midpoint (Gensheimer and
    Narasimhan's rule); follow-up past the last cut point counts as surviving every interval."""

    def __init__(self, cut_points: list[float], reduction: str = "mean") -> None:
        super().__init__()
        self.cut_points, self.reduction = cut_points, reduction

    def forward(self, logits: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        """The loss of hazard logits (N, K) against outcomes (N, 2)."""
        mask, target = interval_targets(outcome, self.cut_points)
        bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
        terms = (bce * mask.to(logits.dtype)).sum(dim=1)
        if self.reduction == "none":
            return terms
        return terms.sum() if self.reduction == "sum" else terms.mean()


def interval_targets(outcome: torch.Tensor, cut_points: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patient and interval: whether the patient was at risk in it (mask) and had the event in it (target)."""
    cuts = torch.tensor(cut_points, dtype=outcome.dtype, device=outcome.device)
    starts = torch.cat([cuts.new_zeros(1), cuts[:-1]])
    time, event = outcome[:, 0:1], outcome[:, 1:2] > 0.5
    index = torch.searchsorted(cuts, outcome[:, 0].contiguous()).unsqueeze(1)  # the interval holding each time
    k = torch.arange(len(cut_points), device=outcome.device).unsqueeze(0)
    past_midpoint = time >= (starts + cuts)[index.clamp(max=len(cut_points) - 1)] / 2
    in_interval = k == index
    mask = (k < index) | (in_interval & (event | past_midpoint))
    return mask, in_interval & event
