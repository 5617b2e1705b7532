"""Survival models: a Cox risk (linear, or an MLP as in DeepSurv) or discrete-time hazard logits, one per interval."""

from __future__ import annotations

import math

from torch import nn

from shared.errors import ConfigError
from shared.tasks.survival.spec import SurvivalModelSpec
from shared.tasks.tabular.model import build_tabular_model
from shared.tasks.tabular.spec import TabularModelSpec


def build_survival_model(n_inputs: int, n_intervals: int, spec: SurvivalModelSpec) -> nn.Module:
    """One output (the log relative risk) for Cox, one hazard logit per interval for the discrete-time model; the
    layers are the tabular task's linear or MLP stacks."""
    if spec.name == "discrete" and n_intervals < 1:
        # A study whose cut points the federated step was to fill must never reach a site's training without them.
        raise ConfigError("data.cut-points", "is empty: the discrete-time model needs its interval ends")
    outputs = 1 if spec.name == "cox" else n_intervals
    layers = TabularModelSpec(name="mlp" if spec.hidden else "logreg", hidden=spec.hidden, dropout=spec.dropout)
    model = build_tabular_model(n_inputs, outputs, layers)
    if spec.name == "discrete":
        # Cut points at event-time quantiles put about 1/K of the events in each of K intervals: start every hazard
        # near that rather than at 1/2, which takes many rounds to unlearn.
        nn.init.constant_(model[-1].bias, -math.log(n_intervals))
    return model
