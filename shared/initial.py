"""A study's starting model: its own seeded initialisation, or the pinned model file `federation.initial-model`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shared.arrays import load_model_file
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.models import file_sha256

if TYPE_CHECKING:  # torch loads only where the model is built: reading a study's paths never needs it
    from torch import nn


def beside(study: StudyConfig, study_file: Path) -> Path | None:
    """The study's initial model file as its study file names it: a relative path is read from that file's folder."""
    named = study.federation.initial_model
    return (study_file.parent / named).absolute() if named else None


def model_file(study: StudyConfig, file: Path | None = None) -> Path | None:
    """The study's initial model file (`file` where the submitting command resolved it), checked against its pin;
    None for a study that starts from its own initialisation."""
    fed = study.federation
    if not fed.initial_model:
        return None
    path = file or Path(fed.initial_model)
    if not path.is_file():
        raise ConfigError("federation.initial-model", f"'{path}' is not a file", source="study")
    try:
        found = file_sha256(path)
    except OSError as exc:
        raise ConfigError("federation.initial-model", f"'{path}' cannot be read ({exc})", source="study") from exc
    if not fed.initial_model_sha256:
        raise ConfigError(
            "federation.initial-model-sha256",
            f"is missing: a study pins the model it starts from, so that every site knows which one it is; add "
            f'initial-model-sha256 = "{found}" (the SHA-256 of {path.name})',
            source="study",
        )
    if found != fed.initial_model_sha256:
        raise ConfigError(
            "federation.initial-model-sha256",
            f"is {fed.initial_model_sha256}, but {path}'s SHA-256 is {found}: the file is not the model the study "
            "pinned",
            source="study",
        )
    return path


def starting_model(study: StudyConfig, file: Path | None = None) -> nn.Module:
    """The model round 1 starts from (or an evaluation-only study evaluates): the study's model built from its seed,
    with the pinned initial model's weights where the study names one."""
    import torch

    from shared.tasks import build_model

    torch.manual_seed(study.seed)
    model = build_model(study)
    path = model_file(study, file)
    if path is not None:
        try:
            load_model_file(model, path)
        except ConfigError as exc:
            raise ConfigError("federation.initial-model", exc.problem, source=f"model file {path}") from exc
    return model
