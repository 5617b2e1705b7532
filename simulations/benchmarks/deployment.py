"""Round time of the same study deployed on loopback (TLS, site authentication, real processes) vs simulated, with
secure aggregation off and on, all in one run.

    python -m simulations.benchmarks.deployment --rounds 5 --out deployment.json

One loopback federation (a SuperLink and one agent with its site worker per hospital) runs the built-in tabular study
with local DP twice, plaintext then SecAgg+; the same two studies then run on Flower's Simulation Engine over the
same sites. Per round: wall time, the slowest site's compute (as the site measures its handler) and the overhead
(wall minus compute), as medians of rounds 2 and later (round 1 holds start-up). Under SecAgg+ each protocol stage's
wall time is reported too.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client.site import SiteConfig
from server.secure import STAGES
from shared.config import PrivacyConfig, StudyConfig
from shared.tasks import get_task
from simulations.loopback import Loopback, wait_history
from simulations.runner import simulate

MODES = {"plaintext": "off", "secagg": "on"}
POLICY = "max-epsilon = 8.0\nlifetime-epsilon = 100.0\nmin-sites = 2\n"  # room for both studies at each site


def round_times(history: dict) -> dict[str, float]:
    """Median wall, slowest-site compute and overhead seconds per round (round 1 excluded), and per SecAgg+ stage."""
    steady = [t for t in history["timings"] if t["round"] > 1]
    times = {
        "wall": statistics.median(t["wall-s"] for t in steady),
        "compute": statistics.median(t["max-site-compute-s"] for t in steady),
        "overhead": statistics.median(t["overhead-s"] for t in steady),
    }
    stages = {s: statistics.median(t[f"{s}-s"] for t in steady) for s in STAGES if f"{s}-s" in steady[0]}
    return {**times, "stages": stages} if stages else times


def studies(rounds: int) -> dict[str, StudyConfig]:
    """The built-in study with local DP, once per mode, named for it."""
    base = get_task("tabular").demo_study()
    out = {}
    for mode, secure in MODES.items():
        federation = dataclasses.replace(base.federation, rounds=rounds, min_sites=3, secure_aggregation=secure)
        privacy = PrivacyConfig(mode="local", epsilon=3.0)
        out[mode] = dataclasses.replace(base, name=f"deployment-{mode}", federation=federation, privacy=privacy)
    return out


def deployed(root: Path, names: list[str], runs: dict[str, StudyConfig]) -> dict[str, dict]:
    """Each study's history on one loopback federation, studies run one after the other."""
    loopback = Loopback(root, names)
    histories = {}
    try:
        loopback.start_server()
        for name, data in zip(names, loopback.data, strict=True):
            loopback.start_site(name, loopback.site_config(name, data, POLICY))
        for name in names:
            loopback.wait_log(name, "worker ready", 120)
        for mode, study in runs.items():
            loopback.submit(study, root)
            histories[mode] = wait_history(
                lambda s=study: loopback.history(s), lambda h: h["status"] != "running", 1800
            )
    finally:
        loopback.close()
    return histories


def main(
    sites: Annotated[int, typer.Option(help="Hospitals")] = 3,
    rounds: Annotated[int, typer.Option(help="Rounds per run")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Run both studies on loopback and in simulation; print per-round times side by side."""
    names = [f"site-{i}" for i in range(1, sites + 1)]
    runs = studies(rounds)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        histories = {"deployed": deployed(root / "deployed", names, runs)}
        data = sorted((root / "deployed" / "data").glob("*.csv"))
        histories["simulated"] = {}
        for mode, study in runs.items():
            folder = root / "simulated" / mode
            simulate(
                study,
                [SiteConfig(n, d, ledger_dir=folder / "ledgers") for n, d in zip(names, data, strict=True)],
                folder,
            )
            histories["simulated"][mode] = json.loads((folder / "history.json").read_text())
    for mode in runs:
        results[mode] = {where: round_times(histories[where][mode]) for where in ("deployed", "simulated")}
        results[mode]["compute-ratio"] = results[mode]["deployed"]["compute"] / results[mode]["simulated"]["compute"]
    results["status"] = {w: {m: h["status"] for m, h in by.items()} for w, by in histories.items()}
    table = Table(title=f"{sites} sites, {rounds} rounds, local DP ε=3 (medians of rounds 2..{rounds})")
    for column in ("mode", "run", "round wall (s)", "slowest site compute (s)", "overhead (s)"):
        table.add_column(column, justify="right")
    for mode in runs:
        for where in ("deployed", "simulated"):
            r = results[mode][where]
            table.add_row(mode, where, f"{r['wall']:.2f}", f"{r['compute']:.2f}", f"{r['overhead']:.2f}")
    Console().print(table)
    Console().print(f"SecAgg+ stages deployed (s): {results['secagg']['deployed'].get('stages')}")
    if out:
        out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    typer.run(main)
