"""What training a study's model holds in memory, measured on torch's `meta` device before anything is allocated."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shared.config import StudyConfig
from shared.tasks import build_model, get_task

log = logging.getLogger("medfed.site")

# Besides its weights, training holds each trained value's gradient and Adam's two moments (SGD holds fewer).
TRAINING_COPIES = 3


@dataclass(frozen=True)
class Footprint:
    """A model's size and the bytes training it holds: its state, and one batch's activations when measurable."""

    parameters: int  # parameters and buffers
    trainable: int
    state_bytes: int  # weights, gradients, optimizer state; under local DP, per-example gradients
    activation_bytes: int | None  # None: the model's forward cannot run on `meta` (a pretrained encoder's cannot)

    @property
    def training_mib(self) -> float:
        """What training holds, in MiB."""
        return (self.state_bytes + (self.activation_bytes or 0)) / 2**20


class _Created(TorchDispatchMode):
    """Adds up the bytes of every tensor the operations under it create (views share their base's, so are left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    self.bytes += t.numel() * t.element_size()
        return out


def model_footprint(study: StudyConfig) -> Footprint:
    """The study's model and one training batch built on the `meta` device (shapes only: no memory, no weights
    read). Its state: weights, gradients and optimizer state, plus under local DP one gradient per example of a batch
    as Opacus keeps them (ghost clipping keeps none). Its activations: every tensor one batch's forward pass creates,
    which backward keeps or frees. Against one real training step's peak: 0.5x to 1.7x, median 1.0x (BENCHMARKS.md);
    the data itself is not counted."""
    with torch.device("meta"):
        model = build_model(study)
        batch = get_task(study.task).example_input(study, study.train.batch_size)
        created = _Created()
        try:
            with created:
                model(batch)
            activations: int | None = created.bytes
        except (RuntimeError, NotImplementedError) as exc:  # data-dependent code (a Hugging Face encoder's masks)
            log.debug("study '%s': activations not measured on the meta device (%s)", study.name, exc)
            activations = None
    tensors = [*model.parameters(), *model.buffers()]
    trained = [p for p in model.parameters() if p.requires_grad]
    per_example = study.privacy.mode == "local" and study.privacy.grad_sample_mode != "ghost"
    copies = TRAINING_COPIES + (study.train.batch_size if per_example else 0)
    return Footprint(
        parameters=sum(t.numel() for t in tensors),
        trainable=sum(p.numel() for p in trained),
        state_bytes=sum(t.numel() * t.element_size() for t in tensors)
        + copies * sum(p.numel() * p.element_size() for p in trained),
        activation_bytes=activations,
    )
