"""Speed of the built-in study: wall time end to end (start-up included) and orchestration overhead per round.

    python -m simulations.benchmarks.default_study --repeats 3 --out default_study.json

Overhead per round = round wall time at the server minus the slowest site's own compute (evaluate + train).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table


def one_run(folder: Path) -> dict[str, float]:
    """Run `medfed-sim` in a fresh process and split its wall time into phases."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from simulations.cli import main; main()", "--out", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    total = time.perf_counter() - started
    timings = json.loads((folder / "history.json").read_text())["timings"]
    phases = json.loads((folder / "summary.json").read_text())["timing"]
    steady = timings[1:]
    return {
        "total_s": total,
        "first_round_s": timings[0]["wall-s"],
        "steady_round_wall_s": float(np.median([t["wall-s"] for t in steady])),
        "steady_round_site_compute_s": float(np.median([t["max-site-compute-s"] for t in steady])),
        "steady_round_overhead_s": float(np.median([t["overhead-s"] for t in steady])),
        "simulation_s": phases["simulation-s"],
        "baselines_s": phases["baselines-s"],
        "startup_and_report_s": total - phases["simulation-s"] - phases["baselines-s"],
    }


def main(
    repeats: Annotated[int, typer.Option(help="Runs; medians are reported")] = 3,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Run the built-in study `repeats` times and report medians."""
    work = Path(tempfile.mkdtemp())
    try:
        runs = [one_run(work / f"run-{i}") for i in range(repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    table = Table(title=f"Built-in study (3 sites x 10 rounds), median of {repeats} runs")
    table.add_column("measure")
    table.add_column("seconds", justify="right")
    for key, value in medians.items():
        table.add_row(key, f"{value:.3f}")
    Console().print(table)
    if out:
        out.write_text(json.dumps({"median": medians, "runs": runs}, indent=2))


if __name__ == "__main__":
    typer.run(main)
