"""A study's starting model: its own seeded initialisation, or the pinned model file `federation.initial-model`.

The pin is the SHA-256 of the model's weights as they travel (`weights_sha256`: names, shapes, dtypes and bytes), not
of the file's bytes, so that a site can check the weights the server sends against the study it admitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord

from shared.arrays import arrays_digest, load_arrays, model_arrays, non_finite, read_model_file, wire_form
from shared.config import StudyConfig
from shared.errors import ConfigError

if TYPE_CHECKING:  # torch loads only where the model is built: reading a study's paths never needs it
    from torch import nn

PIN = "federation.initial-model-sha256"
# A model's outputs mean what its own study's setup step made them mean (survival's cut points): a new setup step would
# give the same outputs other meanings.
SETUP_CONFLICT = (
    "names a model trained with its own study's setup step (survival's cut points); this study would run that step "
    "again and give the model's outputs other meanings: copy the setup's results (data.cut-points) from the study.json "
    "of the study that trained it"
)


def beside(study: StudyConfig, study_file: Path) -> Path | None:
    """The study's initial model file as its study file names it: a relative path is read from that file's folder."""
    named = study.federation.initial_model
    return (study_file.parent / named).absolute() if named else None


def check_no_setup(study: StudyConfig) -> None:
    """Refuse a study that names an initial model and would still run its task's setup step (`SETUP_CONFLICT`)."""
    from shared.tasks import get_task

    if study.federation.initial_model and get_task(study.task).needs_setup(study):
        raise ConfigError("federation.initial-model", SETUP_CONFLICT, source="study")


def initial_weights(study: StudyConfig, file: Path | None = None) -> ArrayRecord | None:
    """The weights of the study's initial model file (`file` where the submitting command resolved it), checked
    against the study's pin; None for a study that starts from its own initialisation."""
    fed = study.federation
    if not fed.initial_model:
        return None
    check_no_setup(study)
    path = file or Path(fed.initial_model)
    try:
        weights = read_model_file(path)
    except ConfigError as exc:
        raise ConfigError("federation.initial-model", exc.problem, source=f"model file {path}") from exc
    found = weights_sha256(weights)
    if not fed.initial_model_sha256:
        raise ConfigError(
            PIN,
            f"is missing: a study pins the model it starts from, so that every site can check it is sent that one; add "
            f'initial-model-sha256 = "{found}" (the SHA-256 of the weights in {path.name})',
            source="study",
        )
    if found != fed.initial_model_sha256:
        raise ConfigError(
            PIN,
            f"is {fed.initial_model_sha256}, but the weights in {path} have SHA-256 {found}: not the model the study "
            "pinned",
            source="study",
        )
    problem = non_finite(weights)
    if problem:
        raise ConfigError("federation.initial-model", f"cannot start a study: {problem}", source=f"model file {path}")
    return weights


def weights_sha256(weights: ArrayRecord) -> str:
    """A model's pin: the SHA-256 of its weights as they travel to the sites (`wire_form`), which is what a site can
    check the weights it receives against."""
    return arrays_digest(wire_form(weights))


def starting_model(study: StudyConfig, file: Path | None = None) -> nn.Module:
    """The model round 1 starts from (or an evaluation-only study evaluates): the study's model built from its seed,
    with the pinned initial model's weights where the study names one."""
    return _start(study, file)[0]


def starting_arrays(study: StudyConfig, file: Path | None = None) -> ArrayRecord:
    """The global model round 1 starts from: the pinned file's weights as saved (FedAdam's studies save float64; they
    travel as float32, the form the pin is taken over), once they fit the study's model; else the seeded model's."""
    model, weights = _start(study, file)
    return model_arrays(model) if weights is None else weights


def _start(study: StudyConfig, file: Path | None) -> tuple[nn.Module, ArrayRecord | None]:
    """The seeded model, loaded with the initial model's weights (checked to fit it) where the study names one."""
    model, weights = _seeded(study), initial_weights(study, file)
    if weights is not None:
        try:
            load_arrays(model, weights)
        except ValueError as exc:
            where = f"model file {file or study.federation.initial_model}"
            raise ConfigError("federation.initial-model", f"is not this study's model ({exc})", source=where) from exc
    return model, weights


def _seeded(study: StudyConfig) -> nn.Module:
    import torch

    from shared.tasks import build_model

    torch.manual_seed(study.seed)
    return build_model(study)


def pinned_start(study: StudyConfig, server_round: int, train: bool) -> str | None:
    """The weights digest a site must receive in this message, or None where no pin applies: every evaluation of an
    evaluation-only study, and round 1's training of a study that starts from an initial model. (Later rounds carry
    the aggregates of the sites' updates, which no site can check.)"""
    fed = study.federation
    if not fed.initial_model_sha256:
        return None
    if fed.rounds == 0 or (train and server_round == 1):
        return fed.initial_model_sha256
    return None
