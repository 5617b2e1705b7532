"""Flower's command-line programs from this Python environment, and the environment they need to run."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tool(name: str) -> str:
    """A Flower executable (flwr, flower-superlink, flower-supernode) from this Python's environment."""
    return str(Path(sys.executable).with_name(name))


def flower_env(**extra: str) -> dict[str, str]:
    """The environment for Flower's processes: they start their helpers (flower-superexec, flwr-serverapp,
    flwr-clientapp) by name, so this environment's bin folder comes first on PATH even when it is not activated.

    Flower's usage telemetry and update check are off unless the environment turns them on: a hospital's agent and
    the coordinator contact nothing but each other.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    quiet = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    return {**quiet, **os.environ, "PATH": path, **extra}
