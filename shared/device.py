"""Pick the torch device a site trains on: CUDA when present, else CPU."""

from __future__ import annotations

import torch

from shared.errors import ConfigError


def resolve_device(preference: str = "auto") -> torch.device:
    """'auto' takes CUDA when available; 'cuda' without a GPU is a clear error, not a torch traceback."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", "asks for CUDA but no GPU is visible to torch", source="site config")
    if preference != "cpu" and not preference.startswith("cuda"):
        raise ConfigError("device", f"must be auto, cpu or cuda[:N], got '{preference}'", source="site config")
    return torch.device(preference)
