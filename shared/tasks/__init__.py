"""Task registry: one folder per modality, each exposing `TASK`, looked up by the study's `task` name."""

from __future__ import annotations

import importlib

from torch import nn

from shared.config import KNOWN_TASKS, StudyConfig
from shared.errors import ConfigError
from shared.tasks.base import SiteData, Task

__all__ = ["SiteData", "Task", "build_model", "get_task"]


def get_task(name: str) -> Task:
    """Return the task named in a study config, or a clear error listing the known ones."""
    if name not in KNOWN_TASKS:
        raise ConfigError("task", f"'{name}' is not a known task (known: {', '.join(KNOWN_TASKS)})")
    return importlib.import_module(f"shared.tasks.{name}").TASK


def build_model(study: StudyConfig) -> nn.Module:
    """The study's model, identical at the server and every site (made DP-compatible when local DP is on)."""
    model = get_task(study.task).build_model(study)
    if study.privacy.mode == "local":
        from shared.privacy.site import dp_compatible

        model = dp_compatible(model)
    return model
