"""Membership-inference audit: how well a model's per-patient loss tells its training rows from held-out ones."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

BATCH = 1024


@torch.no_grad()
def per_sample_loss(
    model: nn.Module, dataset: Dataset, loss: nn.Module, device: torch.device, order: list[int]
) -> np.ndarray:
    """Each row's loss under the model (kept at the site), in stored order; the rows are batched in `order`."""
    loss = copy.copy(loss)
    loss.reduction = "none"
    model.to(device).eval()
    out = [
        loss(model(x.to(device)), y.to(device)).reshape(len(y), -1).mean(1).cpu().numpy()
        for x, y in DataLoader(dataset, batch_size=BATCH, sampler=order)
    ]
    in_place = np.empty(len(order))
    in_place[order] = np.concatenate(out)
    return in_place


def membership_auc(
    model: nn.Module, members: Dataset, non_members: Dataset, loss: nn.Module, device: torch.device
) -> float:
    """ROC AUC of the loss-threshold attack (Yeom et al. 2018): lower loss means "was trained on".

    0.5 means the attacker learns nothing; 1.0 means every training row is recognised. Both kinds are scored in one
    shuffled pool: a loss that couples the rows of a batch (Cox's risk sets) then treats them alike, where scoring
    each split on its own would tell them apart by the splits' sizes.
    """
    pool = ConcatDataset([members, non_members])
    order = np.random.default_rng(0).permutation(len(pool)).tolist()
    losses = per_sample_loss(model, pool, loss, device, order)
    truth = np.arange(len(pool)) < len(members)
    return float(roc_auc_score(truth, -losses))
