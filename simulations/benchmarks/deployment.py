"""Round time of the same study deployed on loopback (TLS, site authentication, real processes) vs simulated.

    python -m simulations.benchmarks.deployment --secure-aggregation off --out deployment.json

Both run the built-in tabular study with local DP over the same sites for the same rounds, with secure aggregation
as chosen; the per-round overhead is the round's wall time minus its slowest site's compute time, as each run's
history records it. Medians skip round 1 (start-up).
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
from shared.tasks import get_task
from simulations.loopback import Loopback, wait_history
from simulations.runner import simulate


def round_times(history: dict) -> dict[str, float]:
    """Median wall and overhead seconds per round, round 1 excluded."""
    steady = [t for t in history["timings"] if t["round"] > 1]
    return {
        "wall_s": statistics.median(t["wall-s"] for t in steady),
        "overhead_s": statistics.median(t["overhead-s"] for t in steady),
        "compute_s": statistics.median(t["max-site-compute-s"] for t in steady),
    }


def main(
    sites: Annotated[int, typer.Option(help="Hospitals")] = 3,
    rounds: Annotated[int, typer.Option(help="Rounds per run")] = 5,
    secure_aggregation: Annotated[str, typer.Option(help="SecAgg+ in both runs: on | off")] = "off",
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Run the study on loopback and in simulation; print per-round times side by side."""
    base = get_task("tabular").demo_study()
    federation = dataclasses.replace(base.federation, rounds=rounds, min_sites=3, secure_aggregation=secure_aggregation)
    study = dataclasses.replace(base, federation=federation)
    names = [f"site-{i}" for i in range(1, sites + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loopback = Loopback(root / "deployed", names)
        try:
            loopback.start_server()
            for name, data in zip(names, loopback.data, strict=True):
                loopback.start_site(name, loopback.site_config(name, data, "max-epsilon = 8.0\nmin-sites = 2\n"))
            for name in names:
                loopback.wait_log(name, "SuperNode ID", 120)
            private = dataclasses.replace(study, privacy=dataclasses.replace(study.privacy, mode="local", epsilon=8.0))
            loopback.submit(private, root)
            deployed = wait_history(lambda: loopback.history(private), lambda h: h["status"] != "running", 1800)
        finally:
            loopback.close()
        simulated_sites = [
            SiteConfig(n, d, ledger_dir=root / "sim-ledgers") for n, d in zip(names, loopback.data, strict=True)
        ]
        simulate(private, simulated_sites, root / "simulated")
        simulated = json.loads((root / "simulated" / "history.json").read_text())
    results = {"deployed (TLS, loopback)": round_times(deployed), "simulated": round_times(simulated)}
    results["extra overhead per round (s)"] = (
        results["deployed (TLS, loopback)"]["overhead_s"] - results["simulated"]["overhead_s"]
    )
    title = (
        f"{sites} sites, {rounds} rounds, local DP ε=8, SecAgg+ {secure_aggregation} (medians of rounds 2..{rounds})"
    )
    table = Table(title=title)
    for column in ("run", "round wall (s)", "overhead (s)", "slowest site compute (s)"):
        table.add_column(column, justify="right")
    for run in ("deployed (TLS, loopback)", "simulated"):
        r = results[run]
        table.add_row(run, f"{r['wall_s']:.2f}", f"{r['overhead_s']:.2f}", f"{r['compute_s']:.2f}")
    Console().print(table)
    if out:
        status = [deployed["status"], simulated["status"]]
        out.write_text(json.dumps({**results, "secure_aggregation": secure_aggregation, "status": status}, indent=2))


if __name__ == "__main__":
    typer.run(main)
