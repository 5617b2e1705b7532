"""Cost of secure aggregation: SecAgg+ vs plaintext round time, same study and sites, in one run.

    python -m simulations.benchmarks.secagg --out secagg.json

For each federation size the built-in tabular study (its 569 patients split near-evenly) runs with a
~100k-parameter MLP (30 → 300 → 300 → 2), once with plaintext FedAvg and once with SecAgg+, in alternating order.
The figure is the median round wall time over rounds 2.. (round 1 includes actor start-up). Training is
deterministic without DP and both runs start from the same model, so the largest difference between their round-1
models is SecAgg+'s quantisation error; later rounds drift apart as training amplifies it, so the final scores are
reported too.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from safetensors.numpy import load_file

from client.site import SiteConfig
from shared.tasks import build_model, get_task
from shared.tasks.tabular.demo import write_demo_sites
from simulations.runner import simulate

HIDDEN = [300, 300]


def run(study, sites: list[SiteConfig], folder: Path, secure: str) -> tuple[float, dict, dict]:
    """Median steady round wall time of one simulated study, its round-1 model and its final weighted scores."""
    fed = dataclasses.replace(study.federation, secure_aggregation=secure)
    simulate(dataclasses.replace(study, federation=fed), sites, folder)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"] == "completed", history["events"]
    final = next(
        r
        for r in history["metrics"]
        if r["kind"] == "eval" and r["site"] == "weighted" and r["round"] == study.federation.rounds
    )
    wall = statistics.median(t["wall-s"] for t in history["timings"][1:])
    return wall, load_file(folder / "checkpoints" / "round-001.safetensors"), final


def main(
    sizes: Annotated[list[int], typer.Option("--sites", help="Federation sizes")] = [5, 10],  # noqa: B006
    rounds: Annotated[int, typer.Option(help="Rounds per run")] = 6,
    local_epochs: Annotated[int, typer.Option(help="Local epochs per round: more is more compute per round")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Run plaintext and SecAgg+ studies at each size; print median round times and their ratio."""
    base = get_task("tabular").demo_study()
    study = dataclasses.replace(
        base,
        model={**base.model, "hidden": HIDDEN},
        federation=dataclasses.replace(base.federation, rounds=rounds, min_sites=3, strategy="fedavg"),
        train=dataclasses.replace(base.train, local_epochs=local_epochs),
    )
    params = sum(p.numel() for p in build_model(study).parameters())
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in sizes:
            paths = write_demo_sites(root / f"data-{n}", n, alpha=100.0)
            sites = [SiteConfig(p.stem, p) for p in paths]
            order = ["off", "on"] if len(results) % 2 == 0 else ["on", "off"]
            times, models, scores = {}, {}, {}
            for secure in order:
                times[secure], models[secure], scores[secure] = run(study, sites, root / f"{n}-{secure}", secure)
            diff = max(float(np.abs(models["on"][k] - models["off"][k]).max()) for k in models["off"])
            results[str(n)] = {
                "plaintext_round_s": times["off"],
                "secagg_round_s": times["on"],
                "ratio": times["on"] / times["off"],
                "round1_max_model_difference": diff,
                "final_plaintext": {k: scores["off"][k] for k in ("accuracy", "roc-auc")},
                "final_secagg": {k: scores["on"][k] for k in ("accuracy", "roc-auc")},
                "order": order,
            }
            if out:  # after each size: a long run keeps what it measured
                record = {"parameters": params, "rounds": rounds, "local_epochs": local_epochs, "sites": results}
                out.write_text(json.dumps(record, indent=2))
    table = Table(title=f"SecAgg+ vs plaintext, {params:,}-parameter MLP, median round wall time (rounds 2..{rounds})")
    for column in (
        "sites",
        "plaintext (s)",
        "SecAgg+ (s)",
        "ratio",
        "round-1 max |Δ model|",
        "final AUC plain/SecAgg+",
    ):
        table.add_column(column, justify="right")
    for n, r in results.items():
        ratio, diff = f"{r['ratio']:.2f}x", f"{r['round1_max_model_difference']:.1e}"
        auc = f"{r['final_plaintext']['roc-auc']:.3f} / {r['final_secagg']['roc-auc']:.3f}"
        table.add_row(n, f"{r['plaintext_round_s']:.2f}", f"{r['secagg_round_s']:.2f}", ratio, diff, auc)
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
