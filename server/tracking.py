"""MLflow tracking of a study, at the coordinator only: its parameters, each round's metrics per site and weighted,
ε per site, and its outputs as artifacts. A tracking store that fails is warned about once and then left alone: it
never stops or slows the study."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

from server.history import WEIGHTED
from shared.atomic import atomic_write_text
from shared.config import StudyConfig

log = logging.getLogger("medfed.server")

STATE = "tracking.json"  # the MLflow run of this output folder, so that a resumed study goes on logging into it
LOCAL_STORE = "mlflow.db"
LOCAL_ARTIFACTS = "mlflow-artifacts"
# Logged at the end, whichever the study's folder holds.
ARTIFACTS = (
    "study.json",
    "history.json",
    "summary.json",
    "report.html",
    "model-card.md",
    "model-card.json",
    "model.safetensors",
)
# A tracking server that does not answer must not hold the study up for MLflow's default minutes of retries.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
MAX_PARAM = 6000  # MLflow's longest parameter value
BATCH_PARAMS, BATCH_METRICS = 100, 1000  # MLflow's most per log_batch call
UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")  # MLflow's metric names allow these only


class Tracker:
    """One MLflow run of one study output folder; inert when tracking is off or once the store failed."""

    def __init__(self, folder: Path = Path()) -> None:
        self.client: Any = None  # an MlflowClient while tracking works
        self.folder, self.uri, self.run_id, self.logged = folder, "", "", 0

    @classmethod
    def open(cls, study: StudyConfig, folder: Path, create: bool = True) -> Tracker:
        """The folder's run (created, with the study's parameters, when `create` and there is none yet); an inert
        tracker when tracking is off, MLflow is missing, or the store fails."""
        if not study.tracking.mlflow:
            return cls()
        tracker = cls(folder)
        tracker._guard("start", lambda: tracker._open(study, folder, create))
        return tracker

    def _open(self, study: StudyConfig, folder: Path, create: bool) -> None:
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise RuntimeError("MLflow is not installed: pip install -e '.[tracking]'") from exc
        for noisy in ("mlflow", "alembic"):  # each logs its database migrations at INFO (MLflow sets it on import)
            logging.getLogger(noisy).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")  # its SQLAlchemy use
        self.uri = tracking_uri(study, folder)
        saved = _read_state(folder)
        client = MlflowClient(tracking_uri=self.uri)
        if saved.get("uri") == self.uri:
            self.client, self.run_id, self.logged = client, saved["run-id"], int(saved.get("logged", 0))
            return
        if not create:
            return
        name = study.tracking.experiment or study.name
        found = client.get_experiment_by_name(name)
        if found is not None:
            experiment = found.experiment_id
        else:
            local = (folder.resolve() / LOCAL_ARTIFACTS).as_uri() if study.tracking.mlflow == "local" else None
            experiment = client.create_experiment(name, artifact_location=local)
        tags = {"medfed.task": study.task, "medfed.study": study.name}
        run = client.create_run(experiment, run_name=folder.name, tags=tags)
        self.client, self.run_id = client, run.info.run_id
        self._save_state()
        self._batch(params=study_params(study))

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Log the history rows not logged yet, each metric at its round as the step."""
        if self.client is None or len(rows) <= self.logged:
            return
        fresh = rows[self.logged :]

        def log_fresh() -> None:
            self._batch(metrics=[m for row in fresh for m in row_metrics(row)])
            self.logged = len(rows)
            self._save_state()

        self._guard("log a round", log_fresh)

    def skip_to(self, logged: int) -> None:
        """A resumed study's history holds `logged` rows already: never log more than that twice."""
        self.logged = min(self.logged, logged)

    def log_outputs(self, folder: Path) -> None:
        """Log the folder's report, model card, summary and model as the run's artifacts."""
        if self.client is None:
            return
        for name in ARTIFACTS:
            path = folder / name
            if path.is_file():
                self._guard(f"log {name}", lambda p=path: self.client.log_artifact(self.run_id, str(p)))

    def finish(self, status: str, folder: Path) -> None:
        """Log the outputs and close the run: FINISHED when the study completed, FAILED otherwise."""
        self.log_outputs(folder)
        if self.client is None:
            return
        final = "FINISHED" if status.startswith("completed") else "FAILED"

        def close() -> None:
            self.client.set_tag(self.run_id, "medfed.status", status[:MAX_PARAM])
            self.client.set_terminated(self.run_id, final)

        self._guard("close the run", close)

    def _batch(self, params: dict[str, str] | None = None, metrics: list[tuple[str, float, int]] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        items = [Param(k, v) for k, v in (params or {}).items()]
        for start in range(0, len(items), BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH_PARAMS])
        points = [Metric(k, v, now, step) for k, v, step in metrics or []]
        for start in range(0, len(points), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=points[start : start + BATCH_METRICS])

    def _save_state(self) -> None:
        state = {"uri": self.uri, "run-id": self.run_id, "logged": self.logged}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / STATE, json.dumps(state, indent=2))

    def _guard(self, what: str, action: Any) -> None:
        """Run a tracking action; a failure warns once and turns tracking off for the rest of the study."""
        try:
            action()
        except Exception as exc:  # any store failure (network, disk, MLflow's own errors) alike
            log.warning(
                "MLflow tracking: could not %s (%s: %s); the study goes on untracked",
                what,
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
            )
            self.client = None


def tracking_uri(study: StudyConfig, folder: Path) -> str:
    """The study's tracking URI; "local" is a SQLite store in the output folder."""
    if study.tracking.mlflow == "local":
        return f"sqlite:///{(folder.resolve() / LOCAL_STORE).as_posix()}"
    return study.tracking.mlflow


def study_params(study: StudyConfig) -> dict[str, str]:
    """The study's settings as MLflow parameters: dotted keys, lists and tables as JSON, cut to MLflow's limit."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and prefix.count(".") < 1:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
            return
        text = value if isinstance(value, str) else json.dumps(value)
        out[prefix] = text[:MAX_PARAM]

    walk("", study.to_dict())
    return out


def row_metrics(row: dict[str, Any]) -> list[tuple[str, float, int]]:
    """A history row as (name, value, step): `site/<name>/<metric>` per site, the bare metric for the weighted mean;
    training rows' counts as `train-num-examples`, central DP's spend as `central-dp/<metric>`."""
    site, kind, step = str(row["site"]), row["kind"], int(row["round"])
    out = []
    for key, value in row.items():
        if key in ("round", "site", "kind") or not isinstance(value, int | float) or value != value:
            continue
        if kind == "privacy" and site == WEIGHTED:  # the mean of central DP's one row: the same figures again
            continue
        name = f"{kind}-{key}" if kind == "train" and key == "num-examples" else key
        if kind == "privacy":
            prefix = "central-dp/"
        else:
            prefix = "" if site == WEIGHTED else f"site/{UNSAFE.sub('_', site)}/"
        out.append((prefix + name, float(value), step))
    return out


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return {}
