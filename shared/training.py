"""Modality-agnostic local training and prediction loops used by every task, DP or not."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from shared.config import TrainConfig

PROBE_BATCHES = 3  # timed after a first, warm-up batch; the rest of the round is extrapolated from them
PACE_MARGIN = 1.2  # the extrapolation's safety margin


class WouldOverrun(Exception):
    """Local training, timed over its first batches, would not finish in the time it has."""

    def __init__(self, estimate_s: float, batches: int) -> None:
        self.estimate_s, self.batches = estimate_s, batches
        super().__init__(f"training would take about {estimate_s:.0f} s over {batches} batches")


class ClassWeightedLoss(nn.CrossEntropyLoss):
    """Cross-entropy with per-class weights, averaged over samples: sum_i w[y_i] * loss_i / n.

    PyTorch's weighted mean divides by sum_i w[y_i] instead, which ties each sample's gradient to the batch's other
    labels; DP-SGD (Opacus, `loss_reduction="mean"`) recovers per-sample gradients by scaling with the batch size, so
    only the plain mean gives each patient exactly their own weighted gradient. Ghost clipping sets `reduction` to
    "none" to read the per-sample losses, which this returns as they are."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(weight=weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted per-sample losses, reduced by `self.reduction`."""
        per_sample = F.cross_entropy(input, target, weight=self.weight.to(input.device), reduction="none")
        if self.reduction == "none":
            return per_sample
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()


def balanced_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each class's weight n / (classes x its rows), scikit-learn's "balanced": every class then weighs as much in
    the loss as a whole."""
    counts = torch.bincount(labels.reshape(-1).long(), minlength=n_classes).float()
    return len(labels) / (n_classes * counts.clamp(min=1))


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """A classification dataset's labels without reading its inputs: a TensorDataset's last tensor, an image set's
    `targets`, or the parts of a ConcatDataset (the pooled baseline's) in order."""
    if isinstance(dataset, ConcatDataset):
        return torch.cat([dataset_labels(part) for part in dataset.datasets])
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[-1]
    return dataset.targets


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The study's optimiser over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)


def make_loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """A shuffling loader whose order depends only on the seed."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def train_epochs(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device,
    proximal_mu: float = 0.0,
    empty_batch_step: Callable[[torch.optim.Optimizer], None] | None = None,
    time_left_s: float | None = None,
) -> float:
    """Run local epochs (FedProx term when mu > 0); return the mean training loss of the last epoch.

    DP's Poisson sampling can draw an empty batch; it is still a step of the mechanism (noise only), taken by
    `empty_batch_step` when the DP mode cannot run an empty forward pass. With `time_left_s`, WouldOverrun is
    raised after the first few batches if the whole run, extrapolated from them, would take longer.
    """
    model.to(device).train()
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
    mean_loss = float("nan")
    batches, started, probe_from = epochs * len(loader), time.perf_counter(), 0.0
    done = 0
    for _ in range(epochs):
        total, count = 0.0, 0
        for x, y in loader:
            done += 1  # batches started, this one included
            if time_left_s is not None and done == 2:
                probe_from = time.perf_counter()
            elif time_left_s is not None and done == 2 + PROBE_BATCHES:
                now = time.perf_counter()
                rest = (now - probe_from) / PROBE_BATCHES * (batches - done + 1)
                if now - started + PACE_MARGIN * rest > time_left_s:
                    raise WouldOverrun(now - started + rest, batches)
            if len(y) == 0 and empty_batch_step is not None:
                optimizer.zero_grad(set_to_none=True)
                empty_batch_step(optimizer)
                continue
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if anchor is not None:
                loss = loss + proximal_mu / 2 * sum(
                    (p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
            loss.backward()
            optimizer.step()
            if len(y):
                total += float(loss.detach()) * len(y)
                count += len(y)
        mean_loss = total / max(count, 1)
    return mean_loss


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, loss_fn: nn.Module, device: torch.device, batch_size: int = 1024
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, true labels and class probabilities over a dataset (kept at the site)."""
    model.to(device).eval()
    losses, labels, probs = 0.0, [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        losses += float(loss_fn(logits, y)) * len(y)
        labels.append(y.cpu().numpy())
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
    n = sum(len(y) for y in labels)
    return losses / max(n, 1), np.concatenate(labels), np.concatenate(probs)
