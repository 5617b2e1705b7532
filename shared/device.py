"""Pick the torch device a site trains on: CUDA when present, else CPU."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(value: str, source: str = "site config") -> str:
    """The `device` setting, refused unless it is auto, cpu, cuda or cuda:N (read without importing torch)."""
    if not DEVICE.match(value):
        raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got '{value}'", source=source)
    return value


def resolve_device(preference: str = "auto") -> torch.device:
    """'auto' takes CUDA when available; a GPU that is not there is a clear error naming the setting, not a torch
    traceback at the first tensor moved to it."""
    import torch  # the agent reads its site file without torch

    check_device_name(preference)
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", "asks for CUDA but no GPU is visible to torch", source="site config")
    device = torch.device(preference)
    if device.index is not None and device.index >= torch.cuda.device_count():
        visible = torch.cuda.device_count()
        raise ConfigError(
            "device",
            f"asks for GPU {device.index}, but torch sees {visible} (cuda:0 to cuda:{visible - 1}; "
            "CUDA_VISIBLE_DEVICES renumbers them)",
            source="site config",
        )
    return device
