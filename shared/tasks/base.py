"""The contract every task folder fulfils: load a site's data, build the model, score predictions."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn
from torch.utils.data import Dataset

from shared.arrays import model_arrays
from shared.assessment import classification_assessment
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.metrics import choose_threshold, classification_metrics, headline_metrics, predicted_classes
from shared.training import ClassWeightedLoss, balanced_weights, dataset_labels, predict


@dataclass
class SiteData:
    """A site's validated data, split at the site; `report` is the local pre-flight report and `kept` what the site
    learned from its train split to encode rows (its standardisation statistics), both never sent."""

    train: Dataset
    test: Dataset
    report: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)
    val: Dataset | None = None
    sits_out: str = ""  # why the site trains nothing in this study (it still evaluates); empty: it trains

    def nbytes(self) -> int:
        """Memory held by the tensors and arrays of every split (what a cache of loaded sites has to budget)."""
        splits = [s for s in (self.train, self.test, self.val) if s is not None]
        held = [v for split in splits for v in (getattr(split, "tensors", ()) or vars(split).values())]
        return sum(v.nbytes for v in held if isinstance(v, torch.Tensor | np.ndarray))


@dataclass
class NewInputs:
    """New patients for prediction: an id per input row, the model inputs of the rows training would have used, and
    which rows those are (a row training drops, such as one with a missing feature under `missing = "drop"`, gets no
    prediction but keeps its place)."""

    ids: list[str]
    inputs: torch.Tensor
    usable: np.ndarray
    id_name: str = "row"  # the ids' column in the predictions when no id column is named: data row numbers

    @classmethod
    def every(cls, ids: list[str], inputs: torch.Tensor, id_name: str = "row") -> NewInputs:
        """Inputs for every row."""
        return cls(ids, inputs, np.ones(len(ids), dtype=bool), id_name)


class Task(ABC):
    """A modality: its data loading and validation, model(s), loss and metrics."""

    name: str
    headline: tuple[str, str] = ("accuracy", "roc-auc")  # the two metrics progress lines and summaries show
    keeps_statistics = False  # whether a site encodes rows with statistics of its train split (SiteData.kept)
    classifies: bool = True  # one class per row: class-weighted training, `predicted-classes` in its metrics
    setup_keys: tuple[str, ...] = ()  # the `[data]` keys the federated setup step fills in (`complete_study`)
    curves = "scores"  # what its final assessment's curves are: score bins (ROC, calibration) or "survival"

    @abstractmethod
    def check_study(self, study: StudyConfig) -> None:
        """Validate the study's `data` and `model` options; raise ConfigError naming the field."""

    def study_notes(self, study: StudyConfig) -> list[str]:
        """What a coordinator should know of a valid study before it runs (what it will not report, what its ε does
        not cover), for `medfed-server validate` and a site's `medfed-site check --study` to say."""
        return []

    @abstractmethod
    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """A `[data]` section describing this data file (classes, schema, sizes), the `hints` given winning.

        Used where no study exists yet: a site's pre-flight check, a simulation on the data scientist's own file.
        """

    def schema(self, path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
        """The site's shareable schema (columns, types, category labels seen at least `min_cell` times)."""
        raise ConfigError("data.task", f"a schema describes a table; task '{self.name}' has none to share")

    def study_template(self, schemas: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """The `[data]` of a study over sites with these schemas (by source file), and what its author must still
        review or add, as comment lines."""
        raise ConfigError("schema", f"task '{self.name}' has no study template: write the study's [data] by hand")

    @abstractmethod
    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, validate and split one site's data; raise DataError naming site, file and column."""

    @abstractmethod
    def build_model(self, study: StudyConfig) -> nn.Module:
        """A freshly initialised model, identical in shape at every site and at the server."""

    def loss(self, study: StudyConfig | None = None) -> nn.Module:
        """Training loss; classification tasks use cross-entropy on logits (survival's depends on the study)."""
        return nn.CrossEntropyLoss()

    def reply_arrays(self, study: StudyConfig, model: nn.Module, data: SiteData, received: ArrayRecord) -> ArrayRecord:
        """What a site sends after training: the exchanged part of its model (multimodal weighs each encoder's update
        by the share of patients who trained it)."""
        return model_arrays(model)

    def train_loss(self, study: StudyConfig, train: Dataset) -> nn.Module:
        """The loss local training minimises: a classifier's is weighted by its classes' inverse frequency in
        `train` (the site's own train split) when the study weighs classes; otherwise `loss(study)`."""
        if not self.classifies or not study.weighs_classes():
            return self.loss(study)
        return ClassWeightedLoss(balanced_weights(dataset_labels(train), len(self.class_names(study))))

    def evaluate(self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device) -> dict[str, float]:
        """Mean loss and metrics of the model on the site's held-out split (the train split stays available to tasks
        whose metrics need it, such as survival's baseline hazard and censoring distribution). A binary
        classifier's decision threshold is chosen on the site's validation split and never leaves the site."""
        loss, y_true, scores = predict(model, data.test, self.loss(study), device)
        return {"loss": loss, **self.metrics(study, y_true, scores, self.threshold(study, model, data, device))}

    def threshold(self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device) -> float | None:
        """A binary classifier's decision threshold, chosen on the site's validation split (None: none, or no split)."""
        if data.val is None:
            return None
        _, y_val, val_scores = predict(model, data.val, self.loss(study), device)
        return choose_threshold(y_val, val_scores[:, 1], study.train.threshold)

    def final_statistics(
        self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device
    ) -> dict[str, Any]:
        """What else the site keeps of the final model for its own predictions, computed from its train split and
        never sent (survival's Cox baseline); none by default."""
        return {}

    def assess(
        self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device, threshold: float | None = None
    ) -> dict[str, Any]:
        """The site's final assessment for the report (shared.assessment): bootstrap CIs of the headline metrics
        (a binary classifier's accuracy from `threshold`, the one its evaluation used), score-bin counts and the train
        split's class counts, aggregates only."""
        _, y_true, probs = predict(model, data.test, self.loss(study), device)
        return classification_assessment(
            y_true,
            probs,
            np.asarray(dataset_labels(data.train)),
            functools.partial(headline_metrics, threshold=threshold),
            self.headline,
            study.report.min_cell,
            study.seed,
        )

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

    def completes(self, study: StudyConfig, completed: StudyConfig) -> bool:
        """Whether `completed` is `study` as the setup step completed it: the same but for the `[data]` keys the
        setup fills in (a resumed study keeps the setup of its first run rather than asking the sites again)."""
        return not self.needs_setup(completed) and self.without_setup(completed) == self.without_setup(study)

    def without_setup(self, study: StudyConfig) -> StudyConfig:
        """The study without the `[data]` keys the setup step fills in."""
        return replace(study, data={k: v for k, v in study.data.items() if k not in self.setup_keys})

    def metrics(
        self, study: StudyConfig, y_true: np.ndarray, scores: np.ndarray, threshold: float | None = None
    ) -> dict[str, float]:
        """Aggregate metrics of one site's predictions, only defined values: a classifier's accuracy, balanced
        accuracy, ROC AUC, sensitivity, specificity and F1 (a binary one's positive from `threshold` on, None: the
        likelier class)."""
        return classification_metrics(y_true, scores, self.class_names(study), threshold)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New patients' model inputs, prepared exactly as the site's training data was (`kept`: what the site kept
        from its train split), with an id each; bad input raises the errors training data gets."""
        raise ConfigError(
            "task",
            f"is '{self.name}', which medfed-site predict does not cover: it writes one row of predictions per patient",
            source="predict",
        )

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """`n` random inputs of the shape and type the study's model takes (to trace it for export)."""
        raise ConfigError("task", f"'{self.name}' has no example input")

    def output_meaning(self, study: StudyConfig) -> str:
        """What the model's raw output is, for whoever runs an exported model."""
        return "class logits, one per class (softmax gives the probabilities)"

    def example_bytes(self, study: StudyConfig) -> int:
        """Bytes one example holds once loaded at the study's sizes: its model input and its target; measured on the
        `meta` device, so no study's sizes allocate anything."""
        with torch.device("meta"):
            x = self.example_input(study, 1)
        return x.numel() * x.element_size() + self.target_bytes(study)

    def target_bytes(self, study: StudyConfig) -> int:
        """Bytes of one example's target once loaded: an int64 class index (survival: a float32 time and event)."""
        return 8

    def class_names(self, study: StudyConfig) -> list[str]:
        """The study's classes as strings; index i is class i."""
        raise ConfigError("task", f"'{self.name}' has no classes")

    def prediction_columns(
        self, study: StudyConfig, outputs: np.ndarray, kept: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """The model's outputs for new patients as a prediction file's columns: each class's probability and the
        predicted class (a binary classifier's from the threshold its site chose for the final model, in `kept`)."""
        names = self.class_names(study)
        probs = torch.softmax(torch.from_numpy(outputs).double(), dim=1).numpy()
        return {
            **{f"probability-{n}": probs[:, i] for i, n in enumerate(names)},
            "predicted": np.array(names)[predicted_classes(probs, kept.get("threshold"))],
        }

    @abstractmethod
    def demo_study(self) -> StudyConfig:
        """The task's built-in study, run by `medfed-sim --task NAME` with no data."""

    @abstractmethod
    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Write the built-in data, one file per simulated hospital."""
