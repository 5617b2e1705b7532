"""What training a study's model holds in memory, measured on torch's `meta` device before anything is allocated."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks import build_model, get_task

log = logging.getLogger("medfed.site")

# Besides its weights, training holds each trained value's gradient and Adam's two moments (SGD holds fewer).
TRAINING_COPIES = 3
# A loader holds a site's examples twice at its peak: converted to the study's sizes, then split into train and test.
LOADING_COPIES = 2


@dataclass(frozen=True)
class Footprint:
    """A model's size and the bytes training it holds: its state, and one batch's activations when measurable."""

    parameters: int  # parameters and buffers
    trainable: int
    state_bytes: int  # weights, gradients, optimizer state; under local DP, per-example gradients
    activation_bytes: int | None  # None: a Hugging Face encoder whose forward reads a value `meta` has not
    example_bytes: int  # one loaded example at the study's sizes: its model input and target

    @property
    def training_mib(self) -> float:
        """What training holds, in MiB."""
        return (self.state_bytes + (self.activation_bytes or 0)) / 2**20

    def data_mib(self, examples: int) -> float:
        """What loading `examples` of a site's examples at the study's sizes holds at its peak, in MiB."""
        return examples * self.example_bytes * LOADING_COPIES / 2**20


# Operations that read a tensor's value into Python, which a `meta` tensor has none of.
_READS_VALUE = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [t for t in (value if isinstance(value, tuple | list) else (value,)) if isinstance(t, torch.Tensor)]


class _Created(TorchDispatchMode):
    """Adds up the bytes of the tensors the operations under it create that training holds: made from something
    trained, or made from nothing (the batch). One made only from values that need no gradient (a frozen encoder
    layer's, a mask's) is freed once used. Views share their base's bytes, so are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        if func in _READS_VALUE and args[0].is_meta and args[0].dtype == torch.bool:
            # A branch on the data: Hugging Face's encoders ask whether the attention mask is all ones, to skip it.
            # False takes the branch that builds the mask. Any other value read (a length) still fails: not sized.
            return False
        out = func(*args, **(kwargs or {}))
        inputs = [t for value in [*args, *(kwargs or {}).values()] for t in _tensors(value)]
        if not func.is_view and (not inputs or any(t.requires_grad for t in inputs)):
            self.bytes += sum(t.numel() * t.element_size() for t in _tensors(out))
        return out


def model_footprint(study: StudyConfig) -> Footprint:
    """The study's model and its training batches built on the `meta` device (shapes only: no memory, no weights
    read). Its state: weights, gradients and optimizer state, plus under local DP one gradient per example of a batch
    as Opacus keeps them (ghost clipping keeps none). Its activations: every tensor a batch's forward pass creates from
    something trained. Against one real training step's peak: 0.5x to 2.7x, median 1.1x (BENCHMARKS.md).
    The data is weighed by `data_mib`, from one example's bytes. A model too large for torch to describe is refused
    by name."""
    try:
        with torch.device("meta"):
            model = build_model(study)
            activations = _activation_bytes(study, model)
            example = get_task(study.task).example_bytes(study)
    except RuntimeError as exc:  # e.g. "Storage size calculation overflowed": more than 2^63 bytes
        raise ConfigError("model", f"is too large for a site to size its training ({exc})") from exc
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
        example_bytes=example,
    )


def _activation_bytes(study: StudyConfig, model: nn.Module) -> int | None:
    """What a forward pass of `train.batch-size` examples creates, from passes of 2 and 3 (it grows with the batch in a
    straight line), so that no batch a study names overflows torch's sizes. None only for a Hugging Face encoder
    whose forward reads a value from the data (beyond whether its attention mask is all ones); any other model that
    cannot run on `meta` is refused by its error."""
    task = get_task(study.task)
    sizes = []
    for n in (2, 3):
        created = _Created()
        try:
            with created:
                model(task.example_input(study, n))
        except (RuntimeError, NotImplementedError) as exc:
            if not any(type(m).__module__.startswith("transformers.") for m in model.modules()):
                raise
            log.warning("study '%s': its encoder's activations not measured on the meta device (%s)", study.name, exc)
            return None
        sizes.append(created.bytes)
    return sizes[0] + (sizes[1] - sizes[0]) * (study.train.batch_size - 2)
