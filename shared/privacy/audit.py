"""Membership-inference audit: how well a model's per-patient loss tells its training rows from held-out ones."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def per_sample_loss(model: nn.Module, dataset: Dataset, loss: nn.Module, device: torch.device) -> np.ndarray:
    """Each row's loss under the model (kept at the site)."""
    loss = copy.copy(loss)
    loss.reduction = "none"
    model.to(device).eval()
    out = [
        loss(model(x.to(device)), y.to(device)).reshape(len(y), -1).mean(1).cpu().numpy()
        for x, y in DataLoader(dataset, batch_size=1024)
    ]
    return np.concatenate(out)


def membership_auc(
    model: nn.Module, members: Dataset, non_members: Dataset, loss: nn.Module, device: torch.device
) -> float:
    """ROC AUC of the loss-threshold attack (Yeom et al. 2018): lower loss means "was trained on".

    0.5 means the attacker learns nothing; 1.0 means every training row is recognised.
    """
    inside = per_sample_loss(model, members, loss, device)
    outside = per_sample_loss(model, non_members, loss, device)
    truth = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
    return float(roc_auc_score(truth, -np.concatenate([inside, outside])))
