"""Survival models: a Cox risk (linear, or an MLP as in DeepSurv) or discrete-time hazard logits, one per interval."""

from __future__ import annotations

import math

from torch import nn

from shared.errors import ConfigError
from shared.tasks.survival.spec import SurvivalModelSpec
from shared.tasks.tabular.model import build_tabular_model
from shared.tasks.tabular.spec import TabularModelSpec


def build_survival_model(n_inputs: int, n_intervals: int, spec: SurvivalModelSpec) -> nn.Module:
    """One output (the log relative risk) for Cox, one hazard logit per interval for the discrete-time model (free per
    interval, or one shared risk plus per-interval baselines when `proportional`); the layers are the tabular task's
    linear or MLP stacks."""
    if spec.name == "discrete" and n_intervals < 1:
        # A study whose cut points the federated step was to fill must never reach a site's training without them.
        raise ConfigError("data.cut-points", "is empty: the discrete-time model needs its interval ends")
    outputs = n_intervals if spec.name == "discrete" and not spec.proportional else 1
    layers = TabularModelSpec(name="mlp" if spec.hidden else "logreg", hidden=spec.hidden, dropout=spec.dropout)
    model = build_tabular_model(n_inputs, outputs, layers)
    if spec.name == "discrete" and spec.proportional:
        # One shared risk added to a baseline logit per interval (a discrete-time Cox model): the frozen unit weights
        # copy the risk to every interval, the trainable bias holds the baselines.
        baselines = nn.Linear(1, n_intervals)
        nn.init.ones_(baselines.weight)
        baselines.weight.requires_grad_(False)
        model.append(baselines)
    if spec.name == "discrete":
        # Cut points at event-time quantiles put about 1/K of the events in each of K intervals: start every hazard
        # near that rather than at 1/2, which takes many rounds to unlearn.
        nn.init.constant_(model[-1].bias, -math.log(n_intervals))
    return model
