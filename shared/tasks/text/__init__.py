"""Text task: a site's clinical notes (CSV/JSONL), a data-independent or pretrained tokenizer, a Transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.config import StudyConfig
from shared.tasks.base import NewInputs, SiteData, Task
from shared.tasks.text import demo
from shared.tasks.text.data import infer_text_options, load_text_site, new_notes
from shared.tasks.text.model import build_text_model, fixed_tokenizer
from shared.tasks.text.spec import data_spec, model_spec
from shared.tasks.text.tokenizer import Tokenizer


def study_tokenizer(study: StudyConfig) -> Tokenizer:
    """The study's fixed tokenizer: the pretrained model's own, else hashing or bytes."""
    data = data_spec(study)
    return fixed_tokenizer(model_spec(study), data.tokenizer, data.vocab_size)


class TextTask(Task):
    """Clinical notes, one label per note (diagnosis, service, ...)."""

    name = "text"

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`."""
        data_spec(study)
        model_spec(study)

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """The classes of a notes file's label column."""
        return infer_text_options(path, site, hints)

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, tokenize and split the site's notes."""
        return load_text_site(path, site, data_spec(study), study_tokenizer(study), study.seed)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New notes tokenized with the study's fixed tokenizer."""
        return new_notes(path, site, data_spec(study), study_tokenizer(study), id_column)

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Token ids of the study's tokenizer, the second half of each note padding."""
        tokenizer, length = study_tokenizer(study), data_spec(study).max_length
        ids = torch.randint(0, tokenizer.vocab_size, (n, length))
        ids[:, length // 2 :] = tokenizer.pad_id
        return ids

    def class_names(self, study: StudyConfig) -> list[str]:
        """The study's note classes."""
        return data_spec(study).class_names

    def build_model(self, study: StudyConfig) -> nn.Module:
        """The compact Transformer, or the local pretrained encoder with a new head."""
        data = data_spec(study)
        return build_text_model(model_spec(study), study_tokenizer(study), data.max_length, len(data.classes))

    def demo_study(self) -> StudyConfig:
        """Synthetic notes study."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """Synthetic notes, one CSV per hospital."""
        return demo.write_demo_sites(folder, n_sites)


TASK = TextTask()
