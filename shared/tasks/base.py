"""The contract every task folder fulfils: load a site's data, build the model, score predictions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.training import predict


@dataclass
class SiteData:
    """A site's validated data, split at the site; `report` is the local pre-flight report, never sent."""

    train: Dataset
    test: Dataset
    report: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Memory held by the tensors and arrays of both splits (what a cache of loaded sites has to budget)."""
        held = [v for split in (self.train, self.test) for v in (getattr(split, "tensors", ()) or vars(split).values())]
        return sum(v.nbytes for v in held if isinstance(v, torch.Tensor | np.ndarray))


class Task(ABC):
    """A modality: its data loading and validation, model(s), loss and metrics."""

    name: str
    headline: tuple[str, str] = ("accuracy", "roc-auc")  # the two metrics progress lines and summaries show

    @abstractmethod
    def check_study(self, study: StudyConfig) -> None:
        """Validate the study's `data` and `model` options; raise ConfigError naming the field."""

    @abstractmethod
    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """A `[data]` section describing this data file (classes, schema, sizes), the `hints` given winning.

        Used where no study exists yet: a site's pre-flight check, a simulation on the data scientist's own file.
        """

    def schema(self, path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
        """The site's shareable schema (columns, types, category labels seen at least `min_cell` times)."""
        raise ConfigError("data.task", f"a schema describes a table; task '{self.name}' has none to share")

    @abstractmethod
    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, validate and split one site's data; raise DataError naming site, file and column."""

    @abstractmethod
    def build_model(self, study: StudyConfig) -> nn.Module:
        """A freshly initialised model, identical in shape at every site and at the server."""

    def loss(self, study: StudyConfig | None = None) -> nn.Module:
        """Training loss; classification tasks use cross-entropy on logits (survival's depends on the study)."""
        return nn.CrossEntropyLoss()

    def evaluate(self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device) -> dict[str, float]:
        """Mean loss and metrics of the model on the site's held-out split (the train split stays available to tasks
        whose metrics need it, such as survival's baseline hazard and censoring distribution)."""
        loss, y_true, scores = predict(model, data.test, self.loss(study), device)
        return {"loss": loss, **self.metrics(study, y_true, scores)}

    def needs_setup(self, study: StudyConfig) -> bool:
        """Whether the study leaves something to the federated setup step before round 1 (see `complete_study`)."""
        return False

    def setup_answer(self, study: StudyConfig, data: SiteData) -> dict[str, Any]:
        """A site's answer to the setup step: counts over its own train split only, never a row."""
        raise ConfigError("task", f"task '{self.name}' has no federated setup step")

    def setup_problem(self, study: StudyConfig, answer: dict[str, Any]) -> str | None:
        """Why the server cannot use a site's setup answer (None: it can); every answer is bounded here."""
        return "this task has no federated setup step"

    def complete_study(self, study: StudyConfig, answers: list[dict[str, Any]]) -> StudyConfig:
        """The study with what the setup step computes from the sites' usable answers."""
        raise ConfigError("task", f"task '{self.name}' has no federated setup step")

    @abstractmethod
    def metrics(self, study: StudyConfig, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        """Aggregate metrics of one site's predictions; only defined values are returned."""

    @abstractmethod
    def demo_study(self) -> StudyConfig:
        """The task's built-in study, run by `medfed-sim --task NAME` with no data."""

    @abstractmethod
    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Write the built-in data, one file per simulated hospital."""
