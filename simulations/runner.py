"""Run a study on Flower's Simulation Engine, one virtual SuperNode per site."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from flwr.clientapp.typing import Mod
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation

from client.app import build_client_app
from client.site import SiteConfig
from server.app import build_server_app
from server.loop import RoundReport
from shared.config import StudyConfig
from shared.models import offer


def simulate(
    study: StudyConfig,
    sites: list[SiteConfig],
    folder: Path,
    progress: Callable[[RoundReport], None] | None = None,
    verbose: bool = False,
) -> None:
    """Run every round in-process; outputs land in `folder` as they would on a real server."""
    simulate_app(build_server_app(study, folder, progress), sites, verbose)


def simulate_app(
    server_app: ServerApp, sites: list[SiteConfig], verbose: bool = False, mods: Sequence[Mod] = ()
) -> None:
    """Run a ServerApp against medfed's ClientApp, one virtual SuperNode per site; `mods` wrap every site's
    handlers."""
    # One torch thread per virtual site: on few cores, thread oversubscription costs more than it gives.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Sites ask Ray for no GPU; without this Ray would also hide the GPU from them, and they could not use CUDA.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.ERROR)
    offer({name: model for site in sites for name, model in site.models.items()})  # for the server's own model
    by_partition = dict(enumerate(sites))
    client_app = build_client_app(lambda context: by_partition[int(context.node_config["partition-id"])], mods)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=len(sites),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            # Every site gets an actor of its own (Ray counts these CPUs, it does not pin them).
            "init_args": {"num_cpus": len(sites), "logging_level": "ERROR", "log_to_driver": verbose},
        },
    )
