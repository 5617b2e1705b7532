"""Scale: 10 to 200 simulated hospitals on one machine, every site or a tenth of them per round.

    python -m simulations.benchmarks.scale --out scale.json

Each configuration runs `medfed-sim` in a fresh process on a synthetic network (120 patients per site, 10 features),
5 rounds of FedAvg, no baselines. Peak memory is the simulation's whole process tree (Ray's actors included), as
the history records it per round.
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

from simulations.progress import with_progress
from simulations.scenario import network_table

ROWS_PER_SITE = 120


def one_run(work: Path, sites: int, fraction: float, rounds: int) -> dict[str, float]:
    """Run one configuration in a fresh `medfed-sim` process; its wall time, round times and peak memory."""
    data = work / f"network-{sites}.csv"
    if not data.is_file():
        network_table(sites, ROWS_PER_SITE).to_csv(data, index=False)
    out = work / f"run-{sites}-{fraction}"
    command = [sys.executable, "-c", "from simulations.cli import main; main()", "--data", str(data)]
    command += ["--label", "outcome", "--site-column", "hospital", "--rounds", str(rounds), "--fraction", str(fraction)]
    command += ["--strategy", "fedavg", "--min-sites", "2", "--no-baselines", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    history = json.loads((out / "history.json").read_text())
    timings = history["timings"]
    return {
        "sites": sites,
        "fraction": fraction,
        "sampled": int(np.median([t["sampled"] for t in timings])),
        "status": history["status"],
        "wall_s": wall,
        "first_round_s": timings[0]["wall-s"],
        "round_s": float(np.median([t["wall-s"] for t in timings[1:]])),
        "peak_gib": max(t["peak-total-gib"] for t in timings),
        "peak_process_gib": max(t["peak-process-gib"] for t in timings),
    }


def main(
    sites: Annotated[str, typer.Option(help="Comma-separated site counts")] = "10,50,100,200",
    fractions: Annotated[str, typer.Option(help="Comma-separated federation.fraction values")] = "1.0,0.1",
    rounds: Annotated[int, typer.Option(help="Rounds per run")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Run every (sites, fraction) configuration once and report them side by side."""
    work = Path(tempfile.mkdtemp())
    try:
        configurations = [(int(n), float(f)) for n in sites.split(",") for f in fractions.split(",")]
        runs = [one_run(work, n, f, rounds) for n, f in with_progress(configurations, "configurations")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"Simulated network, {ROWS_PER_SITE} patients per site, {rounds} rounds")
    for column in ("sites", "fraction", "sampled", "wall s", "round 1 s", "later round s", "peak GiB", "status"):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            str(r["sites"]),
            f"{r['fraction']:.1f}",
            str(r["sampled"]),
            f"{r['wall_s']:.1f}",
            f"{r['first_round_s']:.1f}",
            f"{r['round_s']:.2f}",
            f"{r['peak_gib']:.2f}",
            r["status"],
        )
    Console().print(table)
    if out:
        out.write_text(json.dumps({"rows-per-site": ROWS_PER_SITE, "rounds": rounds, "runs": runs}, indent=2))


if __name__ == "__main__":
    typer.run(main)
