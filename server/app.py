"""The medfed ServerApp: a thin Flower shell over the study round loop."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.loop import RoundReport, run_study
from server.outputs import OutputError, StudyOutputs
from shared.config import INITIAL_MODEL_FILE, StudyConfig
from shared.logs import show_medfed_logs
from shared.models import MODELS_ENV, offer_file


def study_folder(study: StudyConfig, resumable: bool = False) -> Path:
    """A new output folder for one run of a study; a resumable study's folder is fixed by its config's hash, so
    resubmitting the same study finds the state it left."""
    if resumable:
        return Path(study.output_dir) / f"{study.name}-{study.digest()[:12]}"
    return Path(study.output_dir) / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def build_server_app(
    study: StudyConfig | None = None,
    folder: Path | None = None,
    progress: Callable[[RoundReport], None] | None = None,
) -> ServerApp:
    """A ServerApp for `study` (default: read from Flower's run config) writing into `folder`."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        logging.getLogger("medfed").setLevel(logging.INFO)  # round lines in the operator's `flwr run --stream`
        if not logging.getLogger("medfed").handlers and not logging.getLogger().handlers:  # nothing else shows them
            show_medfed_logs(logging.INFO)
        chosen = study or StudyConfig.from_run_config(context.run_config)
        if os.environ.get(MODELS_ENV):  # the server kit's pretrained folders, by the names studies use
            offer_file(Path(os.environ[MODELS_ENV]))
        # Submitted by `medfed-server submit` to a federation: resumes after a crash, secure aggregation by default.
        submitted = bool(context.run_config.get("study-json"))
        outputs = StudyOutputs(folder or study_folder(chosen, resumable=submitted))
        if submitted:
            try:
                outputs.record_run(context.run_id)
            except OutputError as exc:  # the study records its own failure to write, in its status
                logging.getLogger("medfed.server").warning("%s", exc)
        initial = str(context.run_config.get(INITIAL_MODEL_FILE, ""))
        run_study(grid, chosen, outputs, progress, deployed=submitted, initial_file=Path(initial) if initial else None)

    return app


app = build_server_app()
