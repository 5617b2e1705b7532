"""Run a study on Flower's Simulation Engine: one virtual SuperNode per site, on a pool of Ray actors sized to the
machine (or an existing Ray cluster), with Flower's and Ray's own logs kept in a file."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from flwr.app import Context
from flwr.clientapp.typing import Mod
from flwr.common.logger import update_console_handler
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from client.app import build_client_app
from client.site import SiteConfig
from server.app import build_server_app
from server.loop import RoundReport, run_study
from server.outputs import StudyOutputs
from shared.config import SimulationConfig, StudyConfig
from shared.models import offer

LOG_FILE = "simulation.log"  # in the study's output folder: Flower's, Ray's and the server loop's messages
INTERNAL_LOGGERS = ("flwr", "ray", "medfed")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"  # Ray's init sets it on the "ray" logger's handlers

# Importing Flower's simulation shows every library's DeprecationWarning, once, for the rest of the process (its
# ray_transport.utils filters them so): hide them again, as Python does. They are for developers, not for users.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def simulate(
    study: StudyConfig,
    sites: list[SiteConfig],
    folder: Path,
    progress: Callable[[RoundReport], None] | None = None,
    verbose: bool = False,
) -> None:
    """Run every round in-process; outputs land in `folder` as they would on a real server."""
    server_app = build_server_app(study, folder, progress)
    simulate_app(server_app, sites, verbose, settings=study.simulation, log_file=folder / LOG_FILE)


def simulate_app(
    server_app: ServerApp,
    sites: list[SiteConfig],
    verbose: bool = False,
    mods: Sequence[Mod] = (),
    settings: SimulationConfig | None = None,
    log_file: Path | None = None,
) -> None:
    """Run a ServerApp against medfed's ClientApp, one virtual SuperNode per site; `mods` wrap every site's
    handlers (benchmarks and tests inject faulty sites this way)."""
    # One torch thread per actor: on few cores, thread oversubscription costs more than it gives.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Sites ask Ray for no GPU; without this Ray would also hide the GPU from them, and they could not use CUDA.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    offer({name: model for site in sites for name, model in site.models.items()})  # for the server's own model
    settings = settings or SimulationConfig()
    sites = [dataclasses.replace(site, data_cache_mib=settings.site_cache_mib) for site in sites]
    by_partition = dict(enumerate(sites))
    client_app = build_client_app(lambda context: by_partition[int(context.node_config["partition-id"])], mods)
    with _internal_logs(log_file, verbose):
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=len(sites),
            backend_config=backend_config(settings, len(sites), verbose),
        )


def studies_app(studies: list[StudyConfig], work: Path) -> ServerApp:
    """A ServerApp running medfed's round loop for each study in turn, each writing into `work`/its name: one
    simulated federation, so its sites' actors start once for all of them (benchmarks and tests batch studies so)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for done, study in enumerate(studies, start=1):
            started = time.perf_counter()
            run_study(grid, study, StudyOutputs(work / study.name), progress=lambda report: None)
            print(f"[{done}/{len(studies)}] {study.name} ({time.perf_counter() - started:.1f} s)", flush=True)

    return app


def pool_size(settings: SimulationConfig, sites: int) -> int:
    """How many Ray actors share the virtual sites on this machine: `workers`, else one per usable core, never
    more than there are sites."""
    return settings.workers or max(1, min(sites, len(os.sched_getaffinity(0))))


def backend_config(settings: SimulationConfig, sites: int, verbose: bool) -> dict:
    """Flower's Ray backend settings: each actor takes one CPU, so the CPUs Ray is given size the pool; on an existing
    cluster (`ray-address`, else Ray's own `RAY_ADDRESS` variable), the cluster's CPUs do."""
    init: dict = {
        "logging_level": "INFO" if verbose else "ERROR",
        "logging_format": LOG_FORMAT,
        "log_to_driver": verbose,
    }
    if address := settings.ray_address or os.environ.get("RAY_ADDRESS", ""):
        init["address"] = address
    else:  # "local": a Ray of its own, even where another Ray runs on the machine (Ray would otherwise join that)
        init |= {"address": "local", "num_cpus": pool_size(settings, sites)}
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": init}


@contextlib.contextmanager
def _internal_logs(log_file: Path | None, verbose: bool) -> Iterator[None]:
    """Flower's, Ray's and medfed's log records go to `log_file`; the terminal gets only Flower's errors unless
    `verbose` (medfed's own are the command line's to show: `shared.logs.show_medfed_logs`)."""
    handler = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        for name in INTERNAL_LOGGERS:
            logging.getLogger(name).addHandler(handler)
    update_console_handler(level=logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        update_console_handler(level=logging.INFO)
        if handler is not None:
            for name in INTERNAL_LOGGERS:
                logging.getLogger(name).removeHandler(handler)
            handler.close()
