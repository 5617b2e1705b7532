"""`medfed-sim`: a local multi-hospital study in one command, with pooled and local-only baselines."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from client.audit import audit_site
from client.site import SiteConfig
from server.app import study_folder
from server.outputs import StudyOutputs
from shared.config import KNOWN_TASKS, PRIVACY_MODES, STRATEGIES, StudyConfig, load_study
from shared.errors import MedfedError
from shared.partition import SCHEMES
from shared.tasks import get_task
from shared.tasks.text.data import read_notes
from simulations.baselines import local_baseline, pooled_baseline
from simulations.report import comparison, final_site_metrics, print_comparison, round_printer, site_epsilons
from simulations.runner import simulate
from simulations.scenario import (
    IMAGE_TARGETS,
    split_image_set,
    split_table,
    survival_study_data,
    table_study_data,
)

console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def run(
    study_file: Annotated[Path | None, typer.Option("--study", help="Study TOML; default: built-in demo")] = None,
    task: Annotated[str, typer.Option(help=f"Built-in demo without --study: {', '.join(KNOWN_TASKS)}")] = "tabular",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your table, notes (CSV/JSONL) or MedMNIST-style .npz, split into sites; or a folder of sites"
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label column of --data")] = None,
    time_column: Annotated[
        str | None,
        typer.Option("--time", help="Survival: the follow-up time column of --data (implies --task survival)"),
    ] = None,
    event_column: Annotated[
        str | None, typer.Option("--event", help="Survival: the event column of --data, 1 = observed, 0 = censored")
    ] = None,
    site_column: Annotated[str | None, typer.Option(help="Column naming each row's hospital")] = None,
    categorical: Annotated[str | None, typer.Option(help="Comma-separated categorical columns")] = None,
    partition: Annotated[str, typer.Option(help=f"Without --site-column: {', '.join(SCHEMES)}")] = "dirichlet",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration: lower is more skewed")] = 1.0,
    sites: Annotated[int, typer.Option(help="Number of simulated hospitals")] = 3,
    rounds: Annotated[int | None, typer.Option(help="Override federation.rounds")] = None,
    strategy: Annotated[str | None, typer.Option(help=f"Override: {', '.join(STRATEGIES)}")] = None,
    min_sites: Annotated[int | None, typer.Option(help="Override federation.min-sites")] = None,
    fraction: Annotated[
        float | None, typer.Option(help="Override federation.fraction: share of sites per round")
    ] = None,
    secure_aggregation: Annotated[
        str | None, typer.Option(help="Override federation.secure-aggregation: on | off (SecAgg+; 3+ sites)")
    ] = None,
    local_epochs: Annotated[int | None, typer.Option(help="Override train.local-epochs")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the study seed")] = None,
    dp: Annotated[str | None, typer.Option(help=f"Override privacy.mode: {', '.join(PRIVACY_MODES)}")] = None,
    epsilon: Annotated[float | None, typer.Option(help="Override privacy.epsilon (whole study)")] = None,
    site_max_epsilon: Annotated[float, typer.Option(help="Each simulated site's own ε cap")] = math.inf,
    out: Annotated[Path | None, typer.Option(help="Output folder; default: <output-dir>/<name>-<time>")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Override simulation.workers: Ray actors sharing the sites (0: one per core)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Override simulation.ray-address: run on this Ray cluster (e.g. HOST:6379)")
    ] = None,
    baselines: Annotated[bool, typer.Option(help="Also train pooled and local-only models")] = True,
    verbose: Annotated[
        bool, typer.Option(help="Show Flower's and Ray's logs (else they go to simulation.log in the output folder)")
    ] = False,
) -> None:
    """Run a study: the built-in breast-cancer demo with no options (--task imaging / segmentation: synthetic
    lesions; --task survival: the GBSG2 breast-cancer trial)."""
    try:
        if (time_column or event_column) and not study_file:
            task = "survival"
        study = _study(
            study_file or task,
            {
                ("federation", "rounds"): rounds,
                ("federation", "strategy"): strategy,
                ("federation", "min-sites"): min_sites,
                ("federation", "fraction"): fraction,
                ("federation", "secure-aggregation"): secure_aggregation,
                ("train", "local-epochs"): local_epochs,
                ("privacy", "mode"): dp,
                ("privacy", "epsilon"): epsilon,
                ("simulation", "workers"): workers,
                ("simulation", "ray-address"): ray_address,
            },
            seed,
        )
        if data is None:
            folder = out or study_folder(study)
            site_list = [SiteConfig(p.stem, p) for p in get_task(study.task).write_demo_sites(folder / "sites", sites)]
        elif study.task in IMAGE_TARGETS:
            target = IMAGE_TARGETS[study.task]
            options = get_task(study.task).infer_data(data, "simulation", study.data if study_file else {})
            study = dataclasses.replace(study, data=options, name=study.name if study_file else data.stem)
            folder = out or study_folder(study)
            site_list = split_image_set(data, folder / "sites", target, partition, sites, alpha, study.seed)
        elif study.task == "text":
            hints = study.data if study_file else ({"label-column": label} if label else {})
            options = get_task("text").infer_data(data, "simulation", hints)
            table = read_notes(data, "simulation")
            study = dataclasses.replace(study, data=options, name=study.name if study_file else data.stem)
            folder = out or study_folder(study)
            site_list = split_table(
                table, folder / "sites", options["label-column"], site_column, partition, sites, alpha, study.seed
            )
        elif study.task == "survival":
            given = study.data if study_file else {}
            time_column, event_column = time_column or given.get("time"), event_column or given.get("event")
            if not time_column or not event_column:
                raise typer.BadParameter("--data needs --time and --event (or data.time and data.event in the study)")
            cats = [c.strip() for c in categorical.split(",")] if categorical else None
            table, options = survival_study_data(data, time_column, event_column, site_column, cats, given)
            study = dataclasses.replace(study, data=options, name=study.name if study_file else data.stem)
            folder = out or study_folder(study)
            site_list = split_table(
                table, folder / "sites", event_column, site_column, partition, sites, alpha, study.seed
            )
        else:
            if not label and not study.data.get("label"):
                raise typer.BadParameter("--data needs --label (or data.label in the study file)")
            cats = [c.strip() for c in categorical.split(",")] if categorical else None
            given = study.data if study_file else {}  # without --study, describe the user's table, not the demo's
            table, options = table_study_data(data, label or study.data["label"], site_column, cats, given)
            study = dataclasses.replace(study, data=options, name=study.name if study_file else data.stem)
            folder = out or study_folder(study)
            site_list = split_table(
                table, folder / "sites", options["label"], site_column, partition, sites, alpha, study.seed
            )
        # Each simulated site keeps its privacy ledger under the run's folder, with its own ε cap.
        site_list = [
            dataclasses.replace(s, ledger_dir=folder / "ledgers", max_epsilon=site_max_epsilon) for s in site_list
        ]
        _run(study, site_list, folder, baselines, verbose)
    except MedfedError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _study(source: Path | str, overrides: dict[tuple[str, str], object], seed: int | None) -> StudyConfig:
    """A study file, or the named task's built-in study, with command-line overrides applied."""
    raw = (load_study(source) if isinstance(source, Path) else get_task(source).demo_study()).to_dict()
    for (section, key), value in overrides.items():
        if value is not None:
            raw[section][key] = value
    if seed is not None:
        raw["seed"] = seed
    return StudyConfig.from_dict(raw)


def _run(study: StudyConfig, sites: list[SiteConfig], folder: Path, baselines: bool, verbose: bool) -> None:
    dp = "" if study.privacy.mode == "off" else f", {study.privacy.mode} DP ε={study.privacy.epsilon}"
    console.print(
        f"[bold]{study.name}[/]: {len(sites)} sites, {study.federation.strategy}, "
        f"{study.federation.rounds} rounds x {study.train.local_epochs} local epochs{dp} -> {folder}"
    )
    started = time.perf_counter()
    simulate(study, sites, folder, progress=round_printer(console, get_task(study.task).headline), verbose=verbose)
    timing = {"simulation-s": time.perf_counter() - started}
    history = json.loads((folder / "history.json").read_text())
    console.print(f"status: {history['status']}")
    if history["status"].startswith("failed"):  # the output folder takes no more writes: no baselines, no summary
        raise typer.Exit(1)
    methods = {"federated": final_site_metrics(history["metrics"])}
    if baselines:
        started = time.perf_counter()
        methods["pooled"] = pooled_baseline(study, sites)
        methods["local"] = local_baseline(study, sites)
        timing["baselines-s"] = time.perf_counter() - started
    spent = site_epsilons(history["metrics"])
    privacy = {
        s.name: {
            "mia-auc": audit_site(study, s, folder / "model.safetensors"),
            **({"epsilon": spent[s.name]} if s.name in spent else {}),
        }
        for s in sites
    }
    summary = comparison(methods)
    StudyOutputs(folder).write_json("summary.json", {**summary, "privacy": privacy, "timing": timing})
    print_comparison(console, summary, privacy, get_task(study.task).headline)
    console.print(f"outputs: {folder}")
    if not history["status"].startswith("completed"):
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    cli()
