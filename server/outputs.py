"""One output folder per study: config used, metrics history, per-round checkpoints and resumable state, model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from server.history import History
from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.errors import ConfigError, MedfedError

STATE = "state.json"
RUNS = "runs.json"  # the Flower runs that worked on this folder, oldest first: `medfed-server status` reads it


class OutputError(MedfedError):
    """The study folder cannot be written (disk full, read-only, no permission); what it already holds is intact."""

    def __init__(self, folder: Path, name: str, exc: OSError) -> None:
        self.folder = folder
        super().__init__(
            f"cannot write {name} in the output folder {folder} ({exc.strerror or type(exc).__name__}); "
            "the files saved before are intact: free space or fix the folder's permissions, then resubmit the "
            "study to resume after its last saved round"
        )


@dataclass
class SavedState:
    """Where a study stood after its last completed round."""

    round: int
    arrays: ArrayRecord
    strategy: dict[str, dict[str, np.ndarray]]  # FedAdam's {"m_t": {...}, "v_t": {...}}; the loop's "average"
    history: History


def recorded_runs(folder: Path) -> list[str]:
    """The Flower runs that worked on a study folder, oldest first; none before its first run records itself."""
    path = folder / RUNS
    return json.loads(path.read_text()) if path.is_file() else []


class StudyOutputs:
    """Writes every file atomically and durably (`shared.atomic`), so a crash never leaves half a file; a write
    that fails raises OutputError naming the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def write_study(self, study: StudyConfig) -> None:
        """The config the study ran with."""
        self.write_json("study.json", study.to_dict())

    def write_history(self, history: History) -> None:
        """history.json and history.csv."""
        self.write_json("history.json", history.to_dict())
        frame = history.to_frame()
        if not frame.empty:
            self._atomic("history.csv", lambda p: frame.to_csv(p, index=False))

    def record_run(self, run_id: int) -> None:
        """Add a Flower run to the runs that worked on this study (a resumed study has several)."""
        self.write_json(RUNS, [*recorded_runs(self.folder), str(run_id)])

    def checkpoint(self, rnd: int, arrays: ArrayRecord) -> Path:
        """The global model after round `rnd`."""
        return self.save_model(f"checkpoints/round-{rnd:03d}.safetensors", arrays, {"round": str(rnd)})

    def save_state(
        self, rnd: int, arrays: ArrayRecord, strategy: dict[str, dict[str, np.ndarray]], history: History
    ) -> None:
        """Everything a restart needs after round `rnd`: model, strategy state (tensors first), then state.json.

        state.json is replaced last and atomically, so it always points at a complete tensor file: a SIGKILL at
        any moment leaves either the previous round's state or this one's, never a mix.
        """
        tensors = {f"model/{k}": np.ascontiguousarray(v.numpy()) for k, v in arrays.items()}
        for name, values in strategy.items():
            tensors.update({f"{name}/{k}": np.ascontiguousarray(v) for k, v in values.items()})
        tensor_file = f"checkpoints/state-{rnd:03d}.safetensors"
        self._atomic(tensor_file, lambda p: save_file(tensors, str(p)))
        self.write_json(STATE, {"round": rnd, "tensors": tensor_file, "history": history.to_dict()})
        for old in (self.folder / "checkpoints").glob("state-*.safetensors"):
            if old.name != Path(tensor_file).name:
                old.unlink(missing_ok=True)

    def saved_study(self) -> StudyConfig | None:
        """The study an earlier run saved its state under (None: no state, or no readable study.json)."""
        path = self.folder / "study.json"
        if not (self.folder / STATE).is_file() or not path.is_file():
            return None
        try:
            return StudyConfig.from_json(path.read_text())
        except (OSError, MedfedError):
            return None

    def load_state(self, study: StudyConfig) -> SavedState | None:
        """The saved state of this same study, or None; a state of another study or a damaged one is refused."""
        path = self.folder / STATE
        if not path.is_file():
            return None
        saved_study = self.folder / "study.json"
        if not saved_study.is_file() or StudyConfig.from_json(saved_study.read_text()) != study:
            raise ConfigError("output-dir", f"{self.folder} holds another study's state; choose another folder")
        try:
            state = json.loads(path.read_text())
            tensors = load_file(str(self.folder / state["tensors"]))
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise ConfigError("output-dir", f"{path} cannot be resumed from ({exc})") from exc
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key, value in tensors.items():
            group, name = key.split("/", 1)
            groups.setdefault(group, {})[name] = value
        model = groups.pop("model")
        history = History.from_dict(state["history"])
        history.events = self._recorded_events(history.events)
        return SavedState(state["round"], ArrayRecord({k: Array(v) for k, v in model.items()}), groups, history)

    def _recorded_events(self, saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events of history.json when they extend the saved state's: what happened after the last completed
        round (the stop, the dropouts of the round that failed) is kept across a resume."""
        try:
            recorded = json.loads((self.folder / "history.json").read_text())["events"]
        except (OSError, ValueError, KeyError):
            return saved
        return recorded if recorded[: len(saved)] == saved else saved

    def save_model(self, name: str, arrays: ArrayRecord, metadata: dict[str, str] | None = None) -> Path:
        """Model arrays as safetensors."""
        tensors = {k: np.ascontiguousarray(v.numpy()) for k, v in arrays.items()}
        return self._atomic(name, lambda p: save_file(tensors, str(p), metadata=metadata))

    def write_json(self, name: str, payload: Any) -> Path:
        """Any JSON document in the study folder."""
        return self.write_text(name, json.dumps(payload, indent=2, default=str))

    def write_text(self, name: str, text: str) -> Path:
        """Any UTF-8 text file in the study folder."""
        return self._atomic(name, lambda p: p.write_text(text, encoding="utf-8"))

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Any binary file in the study folder."""
        return self._atomic(name, lambda p: p.write_bytes(data))

    def _atomic(self, name: str, write: Callable[[Path], object]) -> Path:
        path = self.folder / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return atomic_write(path, write)
        except OSError as exc:
            raise OutputError(self.folder, name, exc) from exc
