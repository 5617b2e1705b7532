"""FLamby's Fed-Heart-Disease (4 hospitals): pooled, local-only, FedAvg, FedProx and FedAdam per-client accuracy;
with --epsilons, local DP at each ε instead, with the membership-inference attack AUC of each model.

    python -m simulations.benchmarks.fed_heart_disease --data ../shared/data/heart_disease --out heart.json
    python -m simulations.benchmarks.fed_heart_disease --data ../shared/data/heart_disease --epsilons 0.5,1,3,8
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from client.audit import audit_site
from client.site import SiteConfig
from server.history import final_site_metrics, site_epsilons
from shared.config import PrivacyConfig, StudyConfig
from shared.errors import DataError
from simulations.baselines import local_baseline, pooled_baseline
from simulations.progress import with_progress
from simulations.runner import simulate

# FLamby's center ids, in order.
HOSPITALS = ("cleveland", "hungarian", "switzerland", "va")
COLUMNS = [
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
]
FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak"]
STRATEGIES = ("fedavg", "fedprox", "fedadam")
FLAMBY = {"pooled": 0.735, "fedavg": 0.685, "best strategy (FedYogi/FedAdagrad)": 0.731}


def heart_study(strategy: str = "fedadam", seed: int = 43) -> StudyConfig:
    """The Fed-Heart-Disease study on medfed's default federation and training settings."""
    return StudyConfig.from_dict(
        {
            "name": f"fed-heart-disease-{strategy}",
            "seed": seed,
            "federation": {"strategy": strategy, "min-sites": 4},
            "model": {"name": "logreg"},
            "data": {
                "label": "disease",
                "label-type": "binary",
                "classes": [0, 1],
                "features": FEATURES,
                # FLamby: one-hot cp and restecg over the pooled categories with drop_first -> 13 inputs.
                "categorical": {"cp": [1, 2, 3, 4], "restecg": [0, 1, 2]},
                "drop-first": True,
                "missing": "drop",
                "test-fraction": 0.34,
                "split-seed": 43,
                # FLamby's split leaves Switzerland's one healthy patient in its test rows, so its train split holds
                # one class; FLamby trains it all the same, where medfed's default (2) would refuse the site.
                "min-per-class": 0,
                "standardize": True,
            },
        }
    )


def write_sites(data_dir: Path, folder: Path) -> list[SiteConfig]:
    """One CSV per hospital as FLamby prepares it: slope, ca and thal dropped, rows with '?' dropped, num > 0."""
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    for name in HOSPITALS:
        source = data_dir / f"processed.{name}.data"
        if not source.is_file():
            raise DataError(name, "file not found (expected the four UCI processed.*.data files)", file=str(source))
        table = pd.read_csv(source, header=None, names=COLUMNS, na_values="?")
        table = table.drop(columns=["slope", "ca", "thal"]).dropna()
        table["disease"] = (table.pop("num") > 0).astype(int)
        path = folder / f"{name}.csv"
        table.to_csv(path, index=False)
        sites.append(SiteConfig(name, path))
    return sites


def run(sites: list[SiteConfig], work: Path, seed: int = 43) -> dict[str, dict]:
    """Every method's per-client test accuracy, in HOSPITALS order, with its mean, for one training seed."""
    base = heart_study(seed=seed)
    results = {"pooled": _summary(pooled_baseline(base, sites)), "local": _summary(local_baseline(base, sites))}
    for strategy in with_progress(STRATEGIES, f"seed {seed}: strategies"):
        study = dataclasses.replace(heart_study(strategy, seed), output_dir=str(work))
        folder = work / f"{strategy}-{seed}"
        simulate(study, sites, folder)
        history = json.loads((folder / "history.json").read_text())
        results[strategy] = _summary(final_site_metrics(history["metrics"]))
    return results


def run_privacy(sites: list[SiteConfig], work: Path, epsilons: list[float], seed: int = 43) -> dict[str, dict]:
    """Local DP (δ = 1e-5 per site) at each ε, and the non-private reference: accuracy, ε spent, attack AUC."""
    results = {}
    for eps in with_progress([None, *epsilons], f"seed {seed}: privacy settings"):
        study = heart_study(seed=seed)
        if eps is not None:
            study = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=eps, delta=1e-5))
        key = "non-dp" if eps is None else f"eps={eps:g}"
        study = dataclasses.replace(study, output_dir=str(work), name=f"{study.name}-{key.replace('=', '')}")
        folder = work / f"{key}-{seed}"
        ledgers = [dataclasses.replace(s, ledger_dir=folder / "ledgers") for s in sites]
        simulate(study, ledgers, folder)
        history = json.loads((folder / "history.json").read_text())
        spent = site_epsilons(history["metrics"])
        attack = [audit_site(study, s, folder / "model.safetensors") for s in ledgers]
        results[key] = {
            **_summary(final_site_metrics(history["metrics"])),
            "mia_auc_per_client": attack,
            "mia_auc_mean": float(np.mean(attack)),
            "epsilon_spent_per_client": [spent.get(h, 0.0) for h in HOSPITALS],
            "status": history["status"],
        }
    return results


def combine(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per method: mean per-client accuracy averaged over seeds, its spread, and the per-seed detail."""
    methods = next(iter(per_seed.values()))
    out = {}
    for method in methods:
        means = [r[method]["mean_client_accuracy"] for r in per_seed.values()]
        clients = np.mean([r[method]["per_client"] for r in per_seed.values()], axis=0)
        out[method] = {
            "mean_client_accuracy": float(np.mean(means)),
            "std_over_seeds": float(np.std(means)),
            "per_client": clients.tolist(),
            "per_seed": dict(zip(map(str, per_seed), means, strict=True)),
        }
        for key in ("mia_auc_mean", "epsilon_spent_per_client"):
            if key in methods[method]:
                out[method][key] = np.mean([r[method][key] for r in per_seed.values()], axis=0).tolist()
    return out


def _summary(per_site: dict[str, dict[str, float]]) -> dict:
    per_client = [per_site[h]["accuracy"] for h in HOSPITALS]
    return {"mean_client_accuracy": float(np.mean(per_client)), "per_client": per_client}


def main(
    data: Annotated[Path, typer.Option(help="Folder with the four processed.*.data files")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    seeds: Annotated[str, typer.Option(help="Training seeds (init, batch order); the split stays FLamby's")] = "43",
    epsilons: Annotated[str | None, typer.Option(help="Local-DP sweep over these ε (per site, δ = 1e-5)")] = None,
) -> None:
    """Run the benchmark and print medfed's figures beside FLamby's."""
    with tempfile.TemporaryDirectory() as tmp:
        sites = write_sites(data, Path(tmp) / "sites")
        if epsilons:
            eps = [float(e) for e in epsilons.split(",")]
            results = combine({int(s): run_privacy(sites, Path(tmp) / "runs", eps, int(s)) for s in seeds.split(",")})
            _print_privacy(results, seeds)
            if out:
                out.write_text(json.dumps(results, indent=2))
            return
        results = combine({int(s): run(sites, Path(tmp) / "runs", int(s)) for s in seeds.split(",")})
    table = Table(title=f"Fed-Heart-Disease: mean per-client test accuracy (FLamby split), seeds {seeds}")
    for column in ("method", "mean", "std", *HOSPITALS, "FLamby"):
        table.add_column(column, justify="right")
    for method, r in results.items():
        flamby = FLAMBY.get(method)
        table.add_row(
            method,
            f"{r['mean_client_accuracy']:.3f}",
            f"{r['std_over_seeds']:.3f}",
            *[f"{a:.3f}" for a in r["per_client"]],
            "-" if flamby is None else f"{flamby:.3f}",
        )
    Console().print(table)
    if out:
        out.write_text(json.dumps({**results, "flamby_published": FLAMBY}, indent=2))


def _print_privacy(results: dict[str, dict], seeds: str) -> None:
    table = Table(title=f"Fed-Heart-Disease with local DP (FedAdam, δ = 1e-5 per site), seeds {seeds}")
    for column in ("run", "mean accuracy", "std", *HOSPITALS, "ε spent (max)", "attack AUC (mean)"):
        table.add_column(column, justify="right")
    for key, r in results.items():
        table.add_row(
            key,
            f"{r['mean_client_accuracy']:.3f}",
            f"{r['std_over_seeds']:.3f}",
            *[f"{a:.3f}" for a in r["per_client"]],
            f"{max(r['epsilon_spent_per_client']):.2f}",
            f"{r['mia_auc_mean']:.3f}",
        )
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
