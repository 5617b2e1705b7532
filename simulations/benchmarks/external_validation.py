"""External validation and a hospital joining later, on FLamby's Fed-Heart-Disease: for each hospital held out, a
federation of the other three trains the model, the held-out hospital only evaluates it (an evaluation-only study,
`federation.rounds = 0`), and then joins all four for a few more rounds from that model (`federation.initial-model`).

    python -m simulations.benchmarks.external_validation --data ../shared/data/heart_disease --out external.json

Each hospital's figure is its accuracy on its own FLamby test rows, beside the same hospital's accuracy under the
federation that included it from the start and under its local-only model (medfed's default FedAdam recipe, 20
rounds, as in `fed_heart_disease`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from client.site import SiteConfig
from server.history import final_site_metrics
from shared.arrays import read_model_file
from shared.config import StudyConfig
from shared.initial import weights_sha256
from simulations.baselines import local_baseline
from simulations.benchmarks.fed_heart_disease import HOSPITALS, heart_study, write_sites
from simulations.progress import with_progress
from simulations.runner import simulate

METHODS = ("external", "joined", "federated", "local")


def federate(study: StudyConfig, sites: list[SiteConfig], folder: Path) -> dict[str, float]:
    """Each site's final test accuracy after simulating `study` over `sites` into `folder`."""
    simulate(study, sites, folder)
    history = json.loads((folder / "history.json").read_text())
    if history["status"] != "completed":
        raise RuntimeError(f"{study.name}: {history['status']}")
    return {site: m["accuracy"] for site, m in final_site_metrics(history["metrics"]).items()}


def from_model(
    study: StudyConfig, model: Path, name: str, rounds: int, min_sites: int, strategy: str = ""
) -> StudyConfig:
    """`study` starting from (rounds = 0: only evaluating) the model file, pinned by its weights' digest, under
    `strategy` (empty: the study's own)."""
    pin = weights_sha256(read_model_file(model))
    federation = dataclasses.replace(
        study.federation,
        strategy=strategy or study.federation.strategy,
        rounds=rounds,
        min_sites=min_sites,
        initial_model=str(model),
        initial_model_sha256=pin,
        average_last=1,
    )
    return dataclasses.replace(study, name=name, federation=federation)


def run(
    sites: list[SiteConfig], work: Path, seed: int, join_rounds: int, join_strategy: str
) -> dict[str, dict[str, float]]:
    """Per held-out hospital, its test accuracy under each method, for one training seed."""
    base = dataclasses.replace(heart_study("fedadam", seed), output_dir=str(work))
    results: dict[str, dict[str, float]] = {h: {} for h in HOSPITALS}
    everyone = federate(base, sites, work / f"all-{seed}")
    local = local_baseline(base, sites, quiet=True)
    for held_out in with_progress(HOSPITALS, f"seed {seed}: held-out hospital"):
        others = [s for s in sites if s.name != held_out]
        three = dataclasses.replace(base, federation=dataclasses.replace(base.federation, min_sites=3))
        folder = work / f"without-{held_out}-{seed}"
        federate(three, others, folder)
        model = folder / "model.safetensors"
        alone = [s for s in sites if s.name == held_out]
        external = federate(from_model(base, model, "external", 0, 1), alone, work / f"external-{held_out}-{seed}")
        joining = from_model(base, model, "joined", join_rounds, 4, join_strategy)
        joined = federate(joining, sites, work / f"joined-{held_out}-{seed}")
        results[held_out] = {
            "external": external[held_out],
            "joined": joined[held_out],
            "federated": everyone[held_out],
            "local": local[held_out]["accuracy"],
        }
    return results


def combine(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict:
    """Per method: each hospital's accuracy averaged over seeds, the mean over hospitals, and its spread over seeds."""
    out = {}
    for method in METHODS:
        means = [float(np.mean([r[h][method] for h in HOSPITALS])) for r in per_seed.values()]
        out[method] = {
            "mean_client_accuracy": float(np.mean(means)),
            "std_over_seeds": float(np.std(means)),
            "per_client": {h: float(np.mean([r[h][method] for r in per_seed.values()])) for h in HOSPITALS},
            "per_seed": dict(zip(map(str, per_seed), means, strict=True)),
        }
    return out


def main(
    data: Annotated[Path, typer.Option(help="Folder with the four processed.*.data files")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    seeds: Annotated[str, typer.Option(help="Training seeds (init, batch order); the split stays FLamby's")] = "43",
    join_rounds: Annotated[int, typer.Option(help="Rounds the four hospitals train on from the three's model")] = 5,
    join_strategy: Annotated[str, typer.Option(help="Their strategy (default: the study's, FedAdam)")] = "",
) -> None:
    """Run the benchmark and print each hospital's accuracy under each method."""
    with tempfile.TemporaryDirectory() as tmp:
        sites = write_sites(data, Path(tmp) / "sites")
        runs = {int(s): run(sites, Path(tmp) / "runs", int(s), join_rounds, join_strategy) for s in seeds.split(",")}
        results = combine(runs)
    labels = {
        "external": "trained by the other 3, evaluated here (rounds = 0)",
        "joined": f"... then all 4 train {join_rounds} more rounds ({join_strategy or 'fedadam'})",
        "federated": "all 4 from the start (20 rounds)",
        "local": "this hospital alone",
    }
    table = Table(title=f"Fed-Heart-Disease, each hospital held out in turn: its test accuracy, seeds {seeds}")
    for column in ("model", "mean", "std", *HOSPITALS):
        table.add_column(column, justify="right")
    for method, r in results.items():
        row = [f"{r['per_client'][h]:.3f}" for h in HOSPITALS]
        table.add_row(labels[method], f"{r['mean_client_accuracy']:.3f}", f"{r['std_over_seeds']:.3f}", *row)
    Console().print(table)
    if out:
        joining = {"join_rounds": join_rounds, "join_strategy": join_strategy or "fedadam"}
        out.write_text(json.dumps({**joining, "seeds": seeds, "methods": results}, indent=2))


if __name__ == "__main__":
    typer.run(main)
