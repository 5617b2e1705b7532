"""Training loops: FedProx's proximal term pulls towards the global weights; prediction shapes; class weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, TensorDataset

from shared.config import TrainConfig
from shared.training import (
    ClassWeightedLoss,
    balanced_weights,
    dataset_labels,
    make_loader,
    make_optimizer,
    predict,
    train_epochs,
)


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


def test_class_weights_change_the_loss_as_computed_by_hand():
    labels = torch.tensor([0, 0, 0, 1])  # three to one
    weights = balanced_weights(labels, 2)
    assert torch.allclose(weights, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.5], [0.0, 0.3], [0.2, 0.1]])
    per_sample = -torch.log_softmax(logits, dim=1)[torch.arange(4), labels]  # each row's cross-entropy
    loss = ClassWeightedLoss(weights)
    assert float(loss(logits, labels)) == pytest.approx(float((weights[labels] * per_sample).sum() / 4))
    assert float(loss(logits, labels)) != pytest.approx(float(nn.CrossEntropyLoss()(logits, labels)))
    loss.reduction = "none"  # what ghost clipping sets to read per-sample losses
    assert torch.allclose(loss(logits, labels), weights[labels] * per_sample)


def test_under_opacus_each_patient_gets_exactly_their_own_weighted_gradient():
    from opacus import GradSampleModule

    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 1])
    weights = balanced_weights(y, 2)
    model = GradSampleModule(nn.Linear(3, 2), loss_reduction="mean")
    ClassWeightedLoss(weights)(model(x), y).backward()
    # Opacus undoes the mean by the batch size: sample i's gradient must be w[y_i] times its own loss's gradient.
    alone = nn.Linear(3, 2)
    alone.load_state_dict(model._module.state_dict())
    for i in range(6):
        alone.zero_grad()
        (weights[y[i]] * nn.functional.cross_entropy(alone(x[i : i + 1]), y[i : i + 1])).backward()
        assert torch.allclose(model._module.weight.grad_sample[i], alone.weight.grad, atol=1e-6)


def test_the_labels_of_a_pooled_training_set_are_read_without_its_inputs():
    parts = [
        TensorDataset(torch.randn(3, 2), torch.tensor([0, 1, 1])),
        TensorDataset(torch.randn(2, 2), torch.tensor([1, 0])),
    ]
    assert dataset_labels(ConcatDataset(parts)).tolist() == [0, 1, 1, 1, 0]
