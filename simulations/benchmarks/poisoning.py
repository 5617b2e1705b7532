"""Fed-Heart-Disease with one dishonest hospital at a time: the honest hospitals' accuracy under each attack and
aggregation setting, next to the clean run.

    python -m simulations.benchmarks.poisoning --data ../shared/data/heart_disease --out poisoning.json
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from server.history import final_site_metrics
from shared.config import StudyConfig
from simulations.attacks import ATTACKS, attack_mod, flip_labels
from simulations.benchmarks.fed_heart_disease import HOSPITALS, heart_study, write_sites
from simulations.runner import simulate_app, studies_app

CLEAN = "clean"
# Federation settings compared; the plain strategies run without medfed's aggregate screen, to show each attack's
# full effect. Every study runs all its rounds (a rejected aggregate never stops it here).
SETTINGS: dict[str, dict[str, Any]] = {
    "fedavg": {"strategy": "fedavg", "max_aggregate_change": 0.0},
    "fedadam": {"strategy": "fedadam", "max_aggregate_change": 0.0},
    "fedmedian": {"strategy": "fedmedian"},
    "fedadam-bounded": {"strategy": "fedadam", "update_norm_median": 2.0, "max_examples_median": 2.0},
}
RECOMMENDED = "fedmedian"


@dataclass(frozen=True)
class Run:
    """One study of the benchmark: a setting, an attack (or none) from one hospital (or none), a seed."""

    setting: str
    attack: str
    attacker: int  # index into HOSPITALS; -1 in the clean run
    seed: int

    def study(self, output_dir: Path) -> StudyConfig:
        """The Fed-Heart-Disease study under this run's setting, named after the run (the attack plan is by name)."""
        base = heart_study(seed=self.seed)
        changes = {**SETTINGS[self.setting], "max_failed_rounds": base.federation.rounds}
        federation = dataclasses.replace(base.federation, **changes)
        return dataclasses.replace(base, name=self.name, output_dir=str(output_dir), federation=federation)

    @property
    def name(self) -> str:
        """A unique study name."""
        return f"{self.setting}-{self.attack}-{HOSPITALS[self.attacker] if self.attacker >= 0 else 'none'}-s{self.seed}"


def plan_runs(seeds: list[int]) -> list[Run]:
    """Every run: per seed and setting, a clean run and each attack from each hospital."""
    cases = [(CLEAN, -1)] + [(attack, h) for attack in ATTACKS for h in range(len(HOSPITALS))]
    return [Run(setting, attack, h, seed) for seed in seeds for setting in SETTINGS for attack, h in cases]


def honest_accuracy(folder: Path, attacker: int) -> dict[str, Any]:
    """Mean final accuracy over the honest hospitals, with the run's status and robustness events."""
    history = json.loads((folder / "history.json").read_text())
    final = final_site_metrics(history["metrics"])
    honest = [h for i, h in enumerate(HOSPITALS) if i != attacker]
    scores = [final.get(h, {}).get("accuracy") for h in honest]
    events: dict[str, int] = {}
    for event in history["events"]:
        events[event["event"]] = events.get(event["event"], 0) + 1
    accuracy = None if None in scores else float(np.mean(scores))
    return {"accuracy": accuracy, "status": history["status"], "events": events}


def summarize(runs: list[Run], results: list[dict[str, Any]], seeds: list[int]) -> dict:
    """Per setting: clean accuracy and each attack's accuracy (mean over attacking hospitals, then over seeds)."""
    table: dict[tuple[str, str, int], list[float]] = {}
    for run, result in zip(runs, results, strict=True):
        # A run whose final evaluation failed everywhere scores 0: the attack destroyed the model.
        table.setdefault((run.setting, run.attack, run.seed), []).append(result["accuracy"] or 0.0)
    per_seed = {key: float(np.mean(scores)) for key, scores in table.items()}

    def over_seeds(setting: str, attack: str) -> dict[str, Any]:
        values = [per_seed[(setting, attack, s)] for s in seeds]
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}

    clean = {setting: over_seeds(setting, CLEAN) for setting in SETTINGS}
    attacks = {attack: {setting: over_seeds(setting, attack) for setting in SETTINGS} for attack in ATTACKS}
    worst = {
        setting: max(clean[setting]["mean"] - attacks[a][setting]["mean"] for a in ATTACKS) for setting in SETTINGS
    }
    return {
        "recommended": RECOMMENDED,
        "clean": {s: r["mean"] for s, r in clean.items()},
        "attacks": {a: {s: r["mean"] for s, r in by.items()} for a, by in attacks.items()},
        "worst_loss_vs_clean": worst,
        "clean_loss_vs_fedadam": {s: clean["fedadam"]["mean"] - clean[s]["mean"] for s in SETTINGS},
        "spread": {"clean": clean, "attacks": attacks},
        "settings": SETTINGS,
        "seeds": seeds,
        "runs": [{"study": run.name, **result} for run, result in zip(runs, results, strict=True)],
    }


def main(
    data: Annotated[Path, typer.Option(help="Folder with the four processed.*.data files")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    seeds: Annotated[
        str, typer.Option(help="Training seeds (init, batch order, noise); the split stays FLamby's")
    ] = "43",
) -> None:
    """Run every setting clean and under every attack from every hospital, in one simulated federation."""
    seed_list = [int(s) for s in seeds.split(",")]
    runs = plan_runs(seed_list)
    plan = {run.name: (run.attacker, run.attack) for run in runs if run.attacker >= 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sites = write_sites(data, work / "sites")
        label = heart_study().data["label"]
        flipped = {i: flip_labels(site, label, work / "flipped") for i, site in enumerate(sites)}
        studies = [run.study(work) for run in runs]
        simulate_app(studies_app(studies, work / "runs"), sites, mods=[attack_mod(plan, flipped)])
        results = [honest_accuracy(work / "runs" / run.name, run.attacker) for run in runs]
    summary = summarize(runs, results, seed_list)
    _print(summary)
    if out:
        out.write_text(json.dumps(summary, indent=2))


def _print(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"Fed-Heart-Disease, one dishonest hospital: mean accuracy at the honest hospitals, "
        f"seeds {summary['seeds']}"
    )
    table.add_column("attack")
    for setting in SETTINGS:
        table.add_column(setting + (" (recommended)" if setting == RECOMMENDED else ""), justify="right")
    spread = summary["spread"]
    rows = [(CLEAN, spread["clean"])] + list(spread["attacks"].items())
    for attack, by in rows:
        table.add_row(attack, *[f"{by[s]['mean']:.3f} ± {by[s]['std']:.3f}" for s in SETTINGS])
    table.add_row("worst loss vs clean", *[f"{summary['worst_loss_vs_clean'][s]:+.3f}" for s in SETTINGS])
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
