"""The survival task's optional library, scikit-survival, imported on first use with a clear error without it."""

from __future__ import annotations

import importlib
from types import ModuleType

from shared.errors import ConfigError


def sksurv(module: str) -> ModuleType:
    """`sksurv.<module>`, or a ConfigError saying how to install the `survival` extra."""
    try:
        return importlib.import_module(f"sksurv.{module}")
    except ImportError as exc:
        raise ConfigError(
            "task", "'survival' needs scikit-survival: pip install 'medfed[survival]' (or -e '.[survival]')"
        ) from exc
