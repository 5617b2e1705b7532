"""One output folder per study: config used, metrics history (JSON, CSV), per-round checkpoints, final model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord
from safetensors.numpy import save_file

from server.history import History
from shared.config import StudyConfig


class StudyOutputs:
    """Writes every file atomically (temp file, then rename), so a crash never leaves half a file."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        (self.folder / "checkpoints").mkdir(parents=True, exist_ok=True)

    def write_study(self, study: StudyConfig) -> None:
        """The config the study ran with."""
        self.write_json("study.json", study.to_dict())

    def write_history(self, history: History) -> None:
        """history.json and history.csv."""
        self.write_json("history.json", history.to_dict())
        frame = history.to_frame()
        if not frame.empty:
            self._atomic("history.csv", lambda p: frame.to_csv(p, index=False))

    def checkpoint(self, rnd: int, arrays: ArrayRecord) -> Path:
        """The global model after round `rnd`."""
        return self.save_model(f"checkpoints/round-{rnd:03d}.safetensors", arrays, {"round": str(rnd)})

    def save_model(self, name: str, arrays: ArrayRecord, metadata: dict[str, str] | None = None) -> Path:
        """Model arrays as safetensors."""
        tensors = {k: np.ascontiguousarray(v.numpy()) for k, v in arrays.items()}
        return self._atomic(name, lambda p: save_file(tensors, str(p), metadata=metadata))

    def write_json(self, name: str, payload: Any) -> Path:
        """Any JSON document in the study folder."""
        return self._atomic(name, lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))

    def _atomic(self, name: str, write) -> Path:
        path = self.folder / name
        tmp = path.with_name(f".{path.name}.tmp")
        write(tmp)
        os.replace(tmp, path)
        return path
