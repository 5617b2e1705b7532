"""The time and peak memory of Opacus's PRV accountant at medfed's bounds on its work, and beyond them.

    python -m simulations.benchmarks.prv_cost --out prv_cost.json

A site plans its noise (`plan_noise`) and composes its lifetime ε (Opacus's `get_epsilon` over every study's
entries) with PRV only within PRV_MAX_STEPS, PRV_MAX_PASSES and PRV_MAX_ENTRIES; each case runs in a fresh process, so
its peak resident memory is its own. Plans beyond the bounds show what medfed would do if it did not refuse them;
`opacus` rows are Opacus's own plan at its default error, which medfed's replaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.privacy.accounting import beyond_prv

DELTA = 1e-5
# (target ε, sample rate, steps) noise plans: the corners of the bounds at ε = 3 (every rate at its most steps), higher
# targets (the cost grows with the ε the plan resolves), then two beyond the bounds.
PLANS = [
    (3.0, 1.0, 10_000),
    (3.0, 0.5, 20_000),
    (3.0, 0.1, 100_000),
    (3.0, 0.01, 100_000),
    (3.0, 0.001, 100_000),
    (8.0, 0.01, 100_000),
    (8.0, 0.001, 100_000),
    (50.0, 0.01, 100_000),
    (3.0, 0.5, 100_000),
    (3.0, 1.0, 100_000),
]
# Plans as Opacus's get_noise_multiplier makes them at its default error, which medfed's plan replaces.
OPACUS_DEFAULT = [(3.0, 0.01, 100_000), (8.0, 0.001, 100_000)]
# (entries, noise multiplier) lifetime compositions of 100,000 steps at rate 0.01, split over distinct entries.
COMPOSITIONS = [(4, 4.0), (4, 1.0), (8, 4.0)]

CHILD = f"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from shared.privacy.accounting import plan_noise
kind, args = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
if kind == "plan":
    value = plan_noise(args[0], {DELTA}, args[1], args[2], "prv")
elif kind == "opacus":
    value = get_noise_multiplier(target_epsilon=args[0], target_delta={DELTA}, sample_rate=args[1], steps=args[2],
                                 accountant="prv")
else:
    accountant = create_accountant("prv")
    accountant.history = [tuple(entry) for entry in args]
    value = accountant.get_epsilon(delta={DELTA})
print(json.dumps({{"value": value, "seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(kind: str, args: list) -> dict[str, float]:
    """One plan or composition in a fresh process: its result, seconds and peak resident MB."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, kind, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None) -> None:
    """Measure every case once and report the worst within medfed's bounds."""
    cases = []
    for kind, plans in (("plan", PLANS), ("opacus", OPACUS_DEFAULT)):
        for target, rate, steps in plans:
            measured = measure(kind, [target, rate, steps])
            within = kind == "plan" and not beyond_prv([(1.0, rate, steps)])
            cases.append({"kind": kind, "epsilon": target, "rate": rate, "steps": steps, "entries": 1, **measured})
            cases[-1]["within_bounds"] = within
    for entries, noise in COMPOSITIONS:
        history = [(noise + i / 100, 0.01 + i / 10_000, 100_000 // entries) for i in range(entries)]
        measured = measure("compose", history)
        cases.append(
            {"kind": "compose", "epsilon": None, "rate": 0.01, "steps": 100_000, "entries": entries, **measured}
        )
        cases[-1]["within_bounds"] = not beyond_prv(history)
    within = [c for c in cases if c["within_bounds"]]
    result = {
        "cases": cases,
        "max_within": {"seconds": max(c["seconds"] for c in within), "peak_mb": max(c["peak_mb"] for c in within)},
    }
    table = Table(title="Opacus PRV: one noise plan or one composition, each in a fresh process")
    for column in ("kind", "target ε", "rate", "steps", "entries", "result", "seconds", "peak MB", "medfed"):
        table.add_column(column)
    for c in cases:
        table.add_row(
            c["kind"],
            f"{c['epsilon']:g}" if c["epsilon"] else "-",
            f"{c['rate']:g}",
            f"{c['steps']:,}",
            str(c["entries"]),
            f"{c['value']:.3g}",
            f"{c['seconds']:.1f}",
            f"{c['peak_mb']:,.0f}",
            "accounts" if c["within_bounds"] else "-" if c["kind"] == "opacus" else "refuses",
        )
    Console().print(table)
    if out:
        out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    typer.run(main)
