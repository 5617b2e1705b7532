"""A study's output folder read back: the config, history and (simulations) summary that reports are drawn from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.history import WEIGHTED, final_site_metrics
from server.outputs import RUNS
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks import get_task

UNRELIABLE = "unreliable"  # shown for a site whose held-out split is too small to score
ONE_CLASS_MARK = "*"  # beside a headline figure whose model predicts a single class at that site


@dataclass
class SavedStudy:
    """What a study's output folder holds, read back: the report and the model card are drawn from it."""

    folder: Path
    study: StudyConfig
    history: dict[str, Any]
    summary: dict[str, Any]  # a simulation's summary.json (baselines, audit); empty in a federation
    deployed: bool  # a federation's study (`medfed-server submit`), not a simulation

    @classmethod
    def read(cls, folder: Path) -> SavedStudy:
        """Read study.json, history.json and (when there) summary.json; a missing or damaged file is named."""
        folder = Path(folder)
        loaded = {}
        for name in ("study.json", "history.json", "summary.json"):
            path = folder / name
            if name == "summary.json" and not path.is_file():
                loaded[name] = {}
                continue
            try:
                loaded[name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(str(path), f"cannot be read ({exc})", source="study outputs") from exc
        study = StudyConfig.from_dict(loaded["study.json"])
        return cls(folder, study, loaded["history.json"], loaded["summary.json"], (folder / RUNS).is_file())

    @property
    def shown(self) -> tuple[str, ...]:
        """The task's headline metrics."""
        return get_task(self.study.task).headline

    def final(self) -> dict[str, dict[str, float]]:
        """Each site's metrics on the final model, and the weighted row."""
        return final_site_metrics(self.history["metrics"], weighted=True)

    def train_examples(self) -> dict[str, int]:
        """Each site's training examples, as it last reported them."""
        return {
            r["site"]: int(r["num-examples"])
            for r in self.history["metrics"]
            if r["kind"] == "train" and r["site"] != WEIGHTED and "num-examples" in r
        }

    @property
    def unreliable(self) -> dict[str, str]:
        """A simulation's sites whose held-out split is too small to score, and why."""
        return self.summary.get("unreliable", {})

    @property
    def one_class(self) -> dict[str, list[str]]:
        """Per method of a simulation, the sites where its model predicted a single class."""
        return self.summary.get("single-class", {}).get("sites", {})

    def assessments(self) -> dict[str, dict[str, Any]]:
        """Each site's final assessment (intervals, score bins, class counts)."""
        return self.history.get("assessments", {})
