"""Tabular models: logistic regression and an MLP, both free of BatchNorm so Opacus can train them."""

from __future__ import annotations

from torch import nn

from shared.tasks.tabular.spec import TabularModelSpec


def build_tabular_model(n_inputs: int, n_classes: int, spec: TabularModelSpec) -> nn.Module:
    """Logistic regression (one linear layer on logits) or an MLP with ReLU and dropout."""
    if spec.name == "logreg":
        return nn.Sequential(nn.Linear(n_inputs, n_classes))
    layers: list[nn.Module] = []
    width = n_inputs
    for hidden in spec.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(spec.dropout)]
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)
