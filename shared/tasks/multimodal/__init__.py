"""Multimodal task: one table row per patient with record columns and optional image, note and omics, one encoder
per modality and a fusion head, trained across sites that hold different modalities."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord
from torch import nn
from torch.utils.data import TensorDataset

from shared.arrays import model_arrays
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.groups import COVERAGE, weigh_groups
from shared.tasks.base import NewInputs, SiteData, Task
from shared.tasks.multimodal import demo
from shared.tasks.multimodal.data import load_multimodal_site, new_patients
from shared.tasks.multimodal.describe import agreed_multimodal_data, matrix_columns, multimodal_schema
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.model import build_multimodal_model
from shared.tasks.multimodal.spec import MODALITIES, data_spec, infer_multimodal_options, model_spec
from shared.tasks.tabular.spec import local_dp_notes
from shared.tasks.tabular.table import read_with_options
from shared.tasks.text.model import fixed_tokenizer
from shared.tasks.text.tokenizer import Tokenizer
from shared.training import predict

ABLATED = ("accuracy", "roc-auc")  # the metrics scored again with one modality only
# Rules that compare single sites' updates value by value: a site without a modality would vote "no change" for its
# encoder, so they cannot average an encoder over only the sites that trained it.
PER_SITE_RULES = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")


def study_tokenizer(study: StudyConfig) -> Tokenizer:
    """The study's fixed note tokenizer, as the text task's: the pretrained note encoder's own, else hashing or
    bytes (a study without notes never asks for the pretrained model)."""
    spec, text = data_spec(study), model_spec(study).text()
    if not spec.note_column:
        text = dataclasses.replace(text, name="transformer")
    return fixed_tokenizer(text, spec.tokenizer, spec.vocab_size)


class MultimodalTask(Task):
    """Patients with a record and, where they have them, an image, a note and omics values."""

    name = "multimodal"
    keeps_statistics = True

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`, and refuse aggregation rules that cannot average per modality."""
        data_spec(study)
        model_spec(study)
        if study.federation.strategy in PER_SITE_RULES:
            raise ConfigError(
                "federation.strategy",
                f"'{study.federation.strategy}' compares sites' updates value by value, and a site without a "
                "modality leaves that encoder unchanged: it would count as a vote for no change. Multimodal studies "
                "average each encoder over the sites that trained it: use fedavg, fedprox or fedadam, bounded with "
                "federation.update-norm-bound (or -median) and federation.max-examples",
            )
        if study.privacy.mode.startswith("central"):
            raise ConfigError(
                "privacy.mode",
                f"'{study.privacy.mode}' calibrates its noise to every site contributing to every value; an encoder "
                "averaged over only the sites holding its modality is not. Use privacy.mode = 'local'",
            )

    def study_notes(self, study: StudyConfig) -> list[str]:
        """Under local DP, the site statistics ε does not cover: the record's, and the omics columns' always."""
        spec = data_spec(study)
        omics = [f"the medians, means and SDs of its {len(spec.omics)} omics column(s)"] if spec.omics else []
        return local_dp_notes(study, spec.site_statistics() + omics)

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """Record features, classes and category lists of a table; `hints` name the label and the image, note and
        omics columns (with `omics-file` and no `omics`, every column of that file but its id column)."""
        categorical = hints.get("categorical")
        table = read_with_options(path, site, hints).frame
        if hints.get("omics-file") and not hints.get("omics"):
            hints = {**hints, "omics": matrix_columns(path, site, hints)}
        return infer_multimodal_options(table, hints, list(categorical) if categorical is not None else None)

    def schema(self, path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
        """The table's schema as a tabular site's (record columns and label), its image, note, id and omics columns
        named by role only: never their values."""
        return multimodal_schema(path, site, hints, min_cell)

    def study_template(self, schemas: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """The record's label, classes, features and categories, and the modalities' columns the sites agree on."""
        advice = (
            "# Review the classes (class 1 is the positive class) and each modality's settings (image-size,\n"
            "# max-length, tokenizer, required, min-patients), then add [privacy] and [model] as the\n"
            "# README's multimodal section shows.\n"
        )
        return agreed_multimodal_data(schemas), advice

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, validate, split and pack the site's patients."""
        return load_multimodal_site(path, site, data_spec(study), study_tokenizer(study), study.seed)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New patients packed as the site's training patients were, with its kept statistics."""
        return new_patients(path, site, data_spec(study), study_tokenizer(study), kept, id_column)

    def build_model(self, study: StudyConfig) -> nn.Module:
        """Encoders for the study's modalities and the fusion head."""
        spec = data_spec(study)
        return build_multimodal_model(spec, model_spec(study), study_tokenizer(study), len(spec.classes))

    def reply_arrays(self, study: StudyConfig, model: nn.Module, data: SiteData, received: ArrayRecord) -> ArrayRecord:
        """Each encoder's update weighed by the share of training patients who had its modality (shared.groups)."""
        mask = Layout.of(data_spec(study)).mask(data.train.tensors[0])
        if study.federation.weighting == "equal":
            shares = mask.any(dim=0).double()  # each site that trained an encoder counts once
        else:
            shares = mask.double().mean(dim=0)
        by_key = {f"encoders.{m}.{COVERAGE}": float(shares[MODALITIES.index(m)]) for m in MODALITIES}
        return weigh_groups(model_arrays(model), received, by_key)

    def evaluate(self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device) -> dict[str, float]:
        """Loss and metrics of the fused model; each modality's coverage (share of held-out patients who have it);
        and the metrics with one modality only (`roc-auc/only-image`): what each modality carries by itself."""
        out = super().evaluate(study, model, data, device)
        spec = data_spec(study)
        layout = Layout.of(spec)
        rows, labels = data.test.tensors
        mask = layout.mask(rows)
        loss = self.loss(study)
        for m in spec.modalities:
            k = MODALITIES.index(m)
            out[f"coverage/{m}"] = float(mask[:, k].float().mean())
            only = torch.zeros_like(mask)
            only[:, k] = mask[:, k]
            _, y_true, scores = predict(model, TensorDataset(layout.with_mask(rows, only), labels), loss, device)
            metrics = self.metrics(study, y_true, scores)
            out.update({f"{name}/only-{m}": metrics[name] for name in ABLATED if name in metrics})
        return out

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Packed patients with random values in every part, token ids of the study's tokenizer, and a presence mask
        in which every other patient lacks each optional modality (so tracing sees both branches' arithmetic)."""
        spec = data_spec(study)
        layout = Layout.of(spec)
        parts = layout.parts
        rows = torch.rand(n, layout.width)
        rows[:, parts["record"]] = torch.randn(n, layout.record)
        rows[:, parts["omics"]] = torch.randn(n, layout.omics)
        if layout.tokens:
            rows[:, parts["note"]] = torch.randint(1, study_tokenizer(study).vocab_size, (n, layout.tokens)).float()
        present = torch.tensor([m in spec.modalities for m in MODALITIES]).repeat(n, 1)
        present[1::2, 1:] = False  # the record (MODALITIES[0]) kept: a patient keeps at least one modality
        return layout.with_mask(rows, present)

    def class_names(self, study: StudyConfig) -> list[str]:
        """The label's agreed classes."""
        return data_spec(study).class_names

    def demo_study(self) -> StudyConfig:
        """Synthetic patients: a lesion image, a short note and lab values, the label needing two of them."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Synthetic patients, one folder (table + images) per hospital."""
        return demo.write_demo_sites(folder, n_sites)


TASK = MultimodalTask()
