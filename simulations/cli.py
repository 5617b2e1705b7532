"""`medfed-sim`: a local multi-hospital study in one command, with pooled and local-only baselines."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from client.site import SiteConfig
from client.sitefile import MAX_TRAINING_MIB
from server.history import final_site_metrics, site_epsilons
from server.outputs import StudyOutputs
from server.tracking import Tracker
from shared.config import (
    KNOWN_TASKS,
    PRIVACY_MODES,
    STRATEGIES,
    FederationConfig,
    SimulationConfig,
    StudyConfig,
    load_study,
)
from shared.errors import COMMAND_LINE, ConfigError, MedfedError, PolicyError
from shared.initial import beside, starting_model
from shared.logs import show_medfed_logs
from shared.partition import SCHEMES

if TYPE_CHECKING:
    from simulations.preflight import Plan

console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def run(
    study_file: Annotated[Path | None, typer.Option("--study", help="Study TOML; default: built-in demo")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help=f"Built-in demo without --study: {', '.join(KNOWN_TASKS)} (default: tabular; imaging or segmentation "
            "for an image set's --data)"
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your table, notes (CSV/JSONL) or MedMNIST-style .npz, split into sites; or a folder of one file "
            "(or image sub-folder) per site (override simulation.data)"
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
    site_column: Annotated[
        str | None, typer.Option(help="Column naming each row's hospital (override simulation.site-column)")
    ] = None,
    image_column: Annotated[
        str | None,
        typer.Option(help="Multimodal: the column of image paths, relative to --data's folder (implies that task)"),
    ] = None,
    note_column: Annotated[str | None, typer.Option(help="Multimodal: the column of clinical notes")] = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Text: the notes' column of --data (default: text, or the one besides label and site)"),
    ] = None,
    omics: Annotated[str | None, typer.Option(help="Multimodal: comma-separated omics columns")] = None,
    categorical: Annotated[str | None, typer.Option(help="Comma-separated categorical columns")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="The table's delimiter: , ; | or tab (default: sniffed from the file)")
    ] = None,
    decimal: Annotated[
        str | None, typer.Option(help="The table's decimal separator: . or , (default: sniffed)")
    ] = None,
    na_values: Annotated[str | None, typer.Option(help="Comma-separated values that mean missing (default: ?)")] = None,
    missing: Annotated[
        str | None, typer.Option(help="Rows missing a feature value: drop or impute (override data.missing)")
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help=f"Without --site-column: {', '.join(SCHEMES)} (default: dirichlet)")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Dirichlet concentration: lower is more skewed (default 1)")
    ] = None,
    sites: Annotated[int | None, typer.Option(help="Number of simulated hospitals (default 3)")] = None,
    rounds: Annotated[int | None, typer.Option(help="Override federation.rounds")] = None,
    strategy: Annotated[str | None, typer.Option(help=f"Override: {', '.join(STRATEGIES)}")] = None,
    model: Annotated[
        str | None, typer.Option(help="Override model.name (e.g. survival: cox | discrete; tabular: mlp | logreg)")
    ] = None,
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
    site_max_training_mib: Annotated[
        float,
        typer.Option(
            help="Each simulated site's policy.max-training-mib: the memory training may take, its data included"
        ),
    ] = MAX_TRAINING_MIB,
    out: Annotated[Path | None, typer.Option(help="Output folder; default: <output-dir>/<name>-<time>")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Override simulation.workers: Ray actors sharing the sites (0: one per core)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Override simulation.ray-address: run on this Ray cluster (e.g. HOST:6379)")
    ] = None,
    baselines: Annotated[bool, typer.Option(help="Also train pooled and local-only models")] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Check the data, write the sites' files and study.json to the output folder, train nothing"
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option(help="Show Flower's and Ray's logs (else they go to simulation.log in the output folder)")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars (they show only in a terminal anyway)")] = False,
) -> None:
    """Run a study: the built-in breast-cancer demo with no options (--task imaging / segmentation: synthetic
    lesions; --task survival: the GBSG2 breast-cancer trial; --task multimodal: synthetic patients). Everything
    about the data is checked before anything starts."""
    if min_sites is None and data is not None and study_file is None:
        min_sites = FederationConfig.min_sites  # a data run is a study of its own: the defaults a study file gets
    hints = {
        "label": label,
        "time": time_column,
        "event": event_column,
        "delimiter": "\t" if delimiter == "tab" else delimiter,
        "decimal": decimal,
        "na-values": [v.strip() for v in na_values.split(",")] if na_values is not None else None,
        "missing": missing,
        "image-column": image_column,
        "note-column": note_column,
        "text-column": text_column,
        "omics": [c.strip() for c in omics.split(",") if c.strip()] if omics else None,
    }
    # torch, scikit-learn and matplotlib load once a study is read, so that --help and a mistyped option answer at once
    from client.admission import admit_model
    from server.app import study_folder
    from shared.tasks import get_task
    from shared.tasks.imaging.data import image_set_task
    from simulations.preflight import check_site_count, plan_study

    try:
        if task is None:
            task = (image_set_task(data) if data is not None and not study_file else None) or "tabular"
        if (time_column or event_column) and not study_file:
            task = "survival"
        if (image_column or note_column or omics) and not study_file:
            task = "multimodal"
        overrides = {
            ("federation", "rounds"): rounds,
            ("federation", "strategy"): strategy,
            ("model", "name"): model,
            ("federation", "min-sites"): min_sites,
            ("federation", "fraction"): fraction,
            ("federation", "secure-aggregation"): secure_aggregation,
            ("train", "local-epochs"): local_epochs,
            ("privacy", "mode"): dp,
            ("privacy", "epsilon"): epsilon,
            ("simulation", "workers"): workers,
            ("simulation", "ray-address"): ray_address,
            ("simulation", "data"): str(data.absolute()) if data is not None else None,
            ("simulation", "site-column"): site_column,
            ("simulation", "partition"): partition,
            ("simulation", "alpha"): alpha,
            ("simulation", "sites"): sites,
        }
        study = _overridden(_study_file(study_file) if study_file else get_task(task).demo_study(), overrides, seed)
        _check_split_options(study.simulation, {"--sites": sites, "--partition": partition, "--alpha": alpha})
        cats = [c.strip() for c in categorical.split(",")] if categorical else None
        plan = plan_study(study, study_file is not None, {k: v for k, v in hints.items() if v is not None}, cats)
        plan.study = _overridden(plan.study, overrides, seed)  # what the command line says wins over the defaults
        check_site_count(plan.study, plan.n_sites)
    except MedfedError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    for line in plan.lines:
        console.print(line, highlight=False)
    folder = out or study_folder(plan.study)
    fresh = not folder.exists()
    try:
        if check and (folder / "history.json").exists():  # its study.json and sites are that run's record
            raise ConfigError("--out", f"{folder} holds a run's outputs; --check writes to a new folder", COMMAND_LINE)
        # Each simulated site keeps its privacy ledger under the run's folder, with its own ε cap and model size cap.
        site_list = [
            dataclasses.replace(
                s,
                ledger_dir=folder / "ledgers",
                max_epsilon=site_max_epsilon,
                policy=dataclasses.replace(s.policy, max_training_mib=site_max_training_mib),
            )
            for s in plan.write(folder)
        ]
        try:  # said before the server builds the model in this process, not by every site at round 1
            for site in site_list:
                admit_model(plan.study, site)
        except PolicyError as exc:
            raise PolicyError(f"{exc} (--site-max-training-mib sets the simulated sites' cap)") from exc
        if plan.study.federation.initial_model:  # its pin and its fit to the study's model, before Ray starts
            starting_model(plan.study)
        if check:
            _checked(plan.study, site_list, folder)
            return
        _run(plan, site_list, folder, baselines, verbose, quiet)
    except MedfedError as exc:
        _discard_unsaved(folder, fresh)
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    except BaseException:
        _discard_unsaved(folder, fresh)
        raise


def _study_file(path: Path) -> StudyConfig:
    """A study file; a relative `[simulation] data` or `federation.initial-model` in it is read from the file's own
    folder, as a site.toml's paths are (a run's study.json records absolute ones)."""
    study = load_study(path)
    data, initial = study.simulation.data, beside(study, path)
    if data and not Path(data).is_absolute():
        study = dataclasses.replace(
            study, simulation=dataclasses.replace(study.simulation, data=str((path.parent / data).absolute()))
        )
    if initial is not None:
        study = dataclasses.replace(study, federation=dataclasses.replace(study.federation, initial_model=str(initial)))
    return study


def _check_split_options(sim: SimulationConfig, given: dict[str, object]) -> None:
    """Refuse options that split one table into sites when the data names its own sites (they were ignored)."""
    named = [option for option, value in given.items() if value is not None]
    if not named:
        return
    if sim.site_column:
        own = f"its site column '{sim.site_column}' names each row's hospital"
    elif sim.data and Path(sim.data).is_dir():
        own = f"'{sim.data}' is a folder whose files (or sub-folders) are its sites"
    else:
        return
    raise ConfigError(named[0], f"splits one table into sites, but {own}: drop {' and '.join(named)}", COMMAND_LINE)


def _checked(study: StudyConfig, sites: list[SiteConfig], folder: Path) -> None:
    """--check: the study as it would run, beside its sites' files, and how to run it."""
    StudyOutputs(folder).write_study(study)
    path = folder / "study.json"
    console.print(
        f"checked: {len(sites)} sites, nothing trained; run it with: medfed-sim --study {path}", highlight=False
    )


def _discard_unsaved(folder: Path, fresh: bool) -> None:
    """Remove the folder a run created when it failed before saving any round; a run that saved one keeps it."""
    if fresh and folder.is_dir() and not (folder / "history.json").exists():
        shutil.rmtree(folder)


def _overridden(study: StudyConfig, overrides: dict[tuple[str, str], object], seed: int | None) -> StudyConfig:
    """The study with the command line's overrides applied."""
    raw = study.to_dict()
    for (section, key), value in overrides.items():
        if value is not None:
            raw[section][key] = value
    if seed is not None:
        raw["seed"] = seed
    return StudyConfig.from_dict(raw)


def _run(plan: Plan, sites: list[SiteConfig], folder: Path, baselines: bool, verbose: bool, quiet: bool) -> None:
    from client.audit import audit_site
    from server.modelcard import CARD
    from server.report import REPORT, write_report
    from shared.tasks import get_task
    from simulations.baselines import local_baseline, pooled_baseline
    from simulations.report import ONE_CLASS_ADVICE, comparison, print_comparison, round_printer, single_class_sites
    from simulations.runner import simulate

    study = plan.study
    dp = "" if study.privacy.mode == "off" else f", {study.privacy.mode} DP ε={study.privacy.epsilon}"
    console.print(
        f"[bold]{study.name}[/]: {len(sites)} sites, {study.federation.strategy}, "
        f"{study.federation.rounds} rounds x {study.train.local_epochs} local epochs{dp} -> {folder}"
    )
    started = time.perf_counter()
    simulate(study, sites, folder, progress=round_printer(console, get_task(study.task).headline), verbose=verbose)
    timing = {"simulation-s": time.perf_counter() - started}
    history = json.loads((folder / "history.json").read_text())
    console.print(f"status: {history['status']}", markup=False)
    if history["status"].startswith("failed"):  # the output folder takes no more writes: no baselines, no summary
        raise typer.Exit(1)
    methods = {"federated": final_site_metrics(history["metrics"])}
    if baselines and study.federation.rounds == 0:
        console.print("no pooled or local baselines: the study only evaluates its initial model", highlight=False)
    elif baselines:
        started = time.perf_counter()
        methods["pooled"] = pooled_baseline(study, sites, quiet)
        methods["local"] = local_baseline(study, sites, quiet)
        timing["baselines-s"] = time.perf_counter() - started
    spent = site_epsilons(history["metrics"])
    evaluated = methods["federated"]  # none: no round's model reached a site, and the saved one is the untrained start
    privacy = {
        s.name: {
            **({"mia-auc": audit_site(study, s, folder / "model.safetensors")} if evaluated else {}),
            **({"epsilon": spent[s.name]} if s.name in spent else {}),
        }
        for s in sites
    }
    summary = comparison(methods)
    extra = {"unreliable": plan.caveats, "preflight": plan.sites} if plan.sites else {}
    extra["single-class"] = {"sites": single_class_sites(summary), "try": ONE_CLASS_ADVICE}
    StudyOutputs(folder).write_json("summary.json", {**summary, "privacy": privacy, "timing": timing, **extra})
    write_report(folder)  # again, now with the baselines and the membership-inference audit
    Tracker.open(study, folder, create=False).log_outputs(folder)  # the run the server logged, with the summary
    print_comparison(console, summary, privacy, get_task(study.task).headline, plan.caveats)
    console.print(f"outputs: {folder}", markup=False)
    console.print(f"report: {folder / REPORT}, model card: {folder / CARD}.md", highlight=False, markup=False)
    if not history["status"].startswith("completed"):
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    show_medfed_logs(logging.WARNING)  # their info lines go to simulation.log; the closing table repeats them
    cli()
