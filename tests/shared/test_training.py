"""Training loops: FedProx's proximal term pulls towards the global weights; prediction shapes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from shared.config import TrainConfig
from shared.training import make_loader, make_optimizer, predict, train_epochs


def drift(mu: float) -> float:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 5), torch.randint(0, 2, (64,)))
    model = nn.Linear(5, 2)
    start = [p.detach().clone() for p in model.parameters()]
    train = TrainConfig(lr=0.05, optimizer="sgd")
    train_epochs(
        model,
        make_loader(data, 8, seed=0),
        nn.CrossEntropyLoss(),
        make_optimizer(model, train),
        5,
        torch.device("cpu"),
        proximal_mu=mu,
    )
    return sum(float((p - s).norm()) for p, s in zip(model.parameters(), start, strict=True))


def test_proximal_term_keeps_weights_near_the_global_model():
    assert drift(10.0) < 0.5 * drift(0.0)


def test_predict_returns_probabilities_per_class():
    data = TensorDataset(torch.randn(10, 3), torch.randint(0, 3, (10,)))
    loss, y, probs = predict(nn.Linear(3, 3), data, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert probs.shape == (10, 3) and y.shape == (10,) and loss > 0
    assert torch.allclose(torch.from_numpy(probs).sum(1), torch.ones(10))
