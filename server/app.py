"""The medfed ServerApp: a thin Flower shell over the study round loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.loop import RoundReport, run_study
from server.outputs import StudyOutputs
from shared.config import StudyConfig


def study_folder(study: StudyConfig) -> Path:
    """A new output folder for one run of a study."""
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
        chosen = study or StudyConfig.from_run_config(context.run_config)
        run_study(grid, chosen, StudyOutputs(folder or study_folder(chosen)), progress)

    return app


app = build_server_app()
