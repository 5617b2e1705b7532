"""FLamby's Fed-TCGA-BRCA (6 regions, natural split): pooled, local-only, FedAvg, FedProx and FedAdam for the linear
Cox model and the discrete-time hazard model, scored by the mean over regions of the test C-index; then the
discrete-time model under local DP. Every setting is chosen by cross-validation on the train rows.

    python -m simulations.benchmarks.tcga_brca --data ../shared/data/tcga_brca --out tcga.json
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
import typer
from rich.console import Console
from rich.table import Table

from client.site import SiteConfig
from server.history import final_site_metrics
from shared.config import StudyConfig
from shared.errors import DataError, MedfedError
from shared.tasks.survival.spec import HORIZON_QUANTILES, event_time_cuts
from simulations.baselines import local_baseline, pooled_baseline
from simulations.runner import simulate_app, studies_app

# FLamby's center ids 0..5, in order.
REGIONS = ("northeast", "south", "west", "midwest", "europe", "canada")
TIME, EVENT, FOLD = "T", "E", "fold"
MODELS = ("cox", "discrete")
STRATEGIES = ("fedavg", "fedprox", "fedadam")
EPSILONS = (1.0, 3.0, 8.0)
VALIDATION_SEED = 0  # the folds' shuffle
# Candidate settings, each tried on the validation split; a method keeps its best. `std`: each site standardises the
# covariates with its own train split's statistics (medfed's default), or keeps FLamby's raw values (age in years).
CANDIDATES: dict[str, dict[str, float]] = {
    f"lr{lr:g}-std{std}": {"lr": lr, "std": std} for lr in (0.05, 0.2) for std in (0, 1)
}
# Under DP the batch size is a candidate too: DP-SGD's noise per step is the same whatever the batch, so a larger
# batch averages it over more patients (the accountant pays for the larger sampling rate with fewer steps). A DP
# candidate names its strategy; settings may also set `rounds`, `wd` (weight decay), `slr` (FedAdam's server lr),
# `avg` (federation.average-last) and `age` (1: ages scaled by the study).
# Under DP the covariates are prepared from the study alone (`age`: age in decades from 60 via data.scale, the other
# 38 are 0/1 as given), never from a site's own statistics, so that ε covers the whole pipeline (README, "What ε
# covers"); raw ages, whose gradient dominates every clipped step, ranked patients backwards (BENCHMARKS.md).
DP_CANDIDATES: dict[str, dict[str, Any]] = {
    f"lr0.2-std0-age1-clip{clip:g}-batch{batch}": {
        "strategy": "fedadam",
        "lr": 0.2,
        "std": 0,
        "age": 1,
        "clip": clip,
        "batch": batch,
    }
    for clip in (0.2, 1.0)
    for batch in (8, 32)
}
AGE_SCALE = {"age_at_index": [60.0, 10.0]}
FLAMBY = {"pooled": 0.676, "fedavg": 0.732, "fedprox": 0.729, "best (FedAdam/FedYogi)": 0.815}


def read_brca(data_dir: Path) -> pd.DataFrame:
    """FLamby's patients with their region (0..5) and static fold (train/test)."""
    paths = {name: data_dir / name for name in ("brca.csv", "train_test_split.csv")}
    for name, path in paths.items():
        if not path.is_file():
            raise DataError("tcga-brca", f"file not found (expected FLamby's {name})", file=str(path))
    table = pd.read_csv(paths["brca.csv"]).merge(pd.read_csv(paths["train_test_split.csv"]), on="pid")
    fold, region = table.pop("fold2").str.split("_", expand=True).T.to_numpy()
    table = table.drop(columns=["fold"]).assign(**{FOLD: fold, "region": region.astype(int)})
    return table


def validation_fold(table: pd.DataFrame, fold: int, folds: int, seed: int = VALIDATION_SEED) -> pd.DataFrame:
    """The train rows only, fold `fold` of `folds` marked `test`: each region's events and censored rows are dealt
    out over the folds in a shuffled order (a stratum of one row always trains), so settings are chosen without
    FLamby's test rows."""
    train = table[table[FOLD] == "train"].copy()
    rng = np.random.default_rng(seed)
    marks = np.full(len(train), "train", dtype=object)
    for _, rows in train.groupby(["region", EVENT]).indices.items():
        if len(rows) > 1:
            order = rng.permutation(rows)
            marks[order[np.arange(len(order)) % folds == fold]] = "test"
    train[FOLD] = marks
    return train


def write_sites(table: pd.DataFrame, folder: Path) -> list[SiteConfig]:
    """One CSV per region: the 39 covariates, time, event and fold."""
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    for i, name in enumerate(REGIONS):
        path = folder / f"{name}.csv"
        table[table["region"] == i].drop(columns=["pid", "region"]).to_csv(path, index=False)
        sites.append(SiteConfig(name, path))
    return sites


def brca_study(
    table: pd.DataFrame, model: str, strategy: str, seed: int, setting: dict[str, Any], epsilon: float | None = None
) -> StudyConfig:
    """The study over `table`'s rows under one candidate setting: cut points at the train rows' event-time
    quantiles, horizons at their follow-up quantiles; a test split with a single event still gets its C-index."""
    train = table[table[FOLD] == "train"]
    features = [c for c in table.columns if c not in ("pid", "region", TIME, EVENT, FOLD)]
    name = f"{model}-{strategy}-{'-'.join(f'{k}{v:g}' for k, v in setting.items() if k != 'strategy')}-s{seed}"
    study = {
        "name": name if epsilon is None else f"{name}-eps{epsilon:g}",
        "task": "survival",
        "seed": seed,
        "federation": {
            "strategy": strategy,
            "rounds": int(setting.get("rounds", 20)),
            "min-sites": len(REGIONS),
            "server-lr": setting.get("slr", 0.05),
            "average-last": int(setting.get("avg", 1)),
        },
        "train": {
            "local-epochs": 1,
            "batch-size": int(setting.get("batch", 8)),
            "lr": setting["lr"],
            "weight-decay": setting.get("wd", 0.0),
        },
        # The discrete-time model shares one linear risk across its intervals (a discrete-time Cox model): with 10
        # free heads of 39 weights each and about 120 events, it ranked patients far worse (BENCHMARKS.md).
        "model": {"name": model, **({"proportional": True} if model == "discrete" else {})},
        "data": {
            "time": TIME,
            "event": EVENT,
            "features": features,
            "split-column": FOLD,
            "standardize": bool(setting["std"]),
            "scale": AGE_SCALE if setting.get("age") else {},
            "min-per-class": 1,
            "min-test-events": 1,
            "min-rows": 10,
            "cut-points": event_time_cuts(train.loc[train[EVENT] == 1, TIME].to_numpy(float)),
            "horizons": sorted({float(round(q)) for q in np.quantile(train[TIME], HORIZON_QUANTILES)}),
        },
    }
    if epsilon is not None:
        study["privacy"] = {"mode": "local", "epsilon": epsilon, "delta": 1e-5, "clip-norm": setting["clip"]}
    return StudyConfig.from_dict(study)


def mean_c_index(per_site: dict[str, dict[str, float]]) -> float:
    """The benchmark's metric: the mean over regions of the test C-index, over the regions that have one (a test
    split whose only event follows everyone's follow-up has no comparable pair); NaN when none has."""
    scores = [per_site.get(r, {}).get("c-index", np.nan) for r in REGIONS]
    return float(np.nanmean(scores)) if not np.isnan(scores).all() else float("nan")


def federated(studies: list[StudyConfig], sites: list[SiteConfig], work: Path) -> list[float]:
    """Each study's mean C-index, all studies run one after the other on one simulated federation."""
    work.mkdir(parents=True, exist_ok=True)
    studies = [dataclasses.replace(s, output_dir=str(work)) for s in studies]
    ledgers = [dataclasses.replace(s, ledger_dir=work / "ledgers") for s in sites]
    simulate_app(studies_app(studies, work), ledgers)
    scores = []
    for study in studies:
        history = json.loads((work / study.name / "history.json").read_text())
        scores.append(mean_c_index(final_site_metrics(history["metrics"])))
    return scores


def centralised(study: StudyConfig, sites: list[SiteConfig], method: str) -> float:
    """Mean C-index of the pooled model, or of each region's local model on its own test rows (NaN when a model's
    training diverged)."""
    baseline = pooled_baseline if method == "pooled" else local_baseline
    try:
        return mean_c_index(baseline(study, sites))
    except MedfedError:
        return float("nan")


def evaluate(
    table: pd.DataFrame, sites: list[SiteConfig], work: Path, runs: list[tuple[str, str, str, int, float | None]]
) -> list[float]:
    """The mean C-index of each run (model, method, setting, seed, ε or None) on `table`'s split."""
    settings = {**CANDIDATES, **DP_CANDIDATES}
    scores: dict[int, float] = {}
    fed = []
    for i, (model, method, setting, seed, eps) in enumerate(runs):
        study = brca_study(
            table, model, "fedavg" if method in ("pooled", "local") else method, seed, settings[setting], eps
        )
        if method in ("pooled", "local"):
            scores[i] = centralised(study, sites, method)
            print(f"[{method}] {study.name}: {scores[i]:.3f}", flush=True)
        else:
            fed.append((i, study))
    for (i, _), score in zip(fed, federated([s for _, s in fed], sites, work), strict=True):
        scores[i] = score
    return [scores[i] for i in range(len(runs))]


def cross_validate(
    table: pd.DataFrame, work: Path, folds: int, runs: list[tuple[str, str, str, int, float | None]]
) -> dict[tuple[str, str, str, int, float | None], float]:
    """Each run's mean C-index over `folds`-fold cross-validation on the train rows; -1 for a run that diverged at
    any fold (NaN), so that it is never chosen."""
    per_fold = []
    for fold in range(folds):
        validation = validation_fold(table, fold, folds)
        sites = write_sites(validation, work / f"fold{fold}" / "sites")
        per_fold.append(evaluate(validation, sites, work / f"fold{fold}" / "runs", runs))
    means = np.mean(per_fold, axis=0)
    return {run: -1.0 if np.isnan(mean) else float(mean) for run, mean in zip(runs, means, strict=True)}


def choose(
    table: pd.DataFrame, work: Path, seeds: list[int], folds: int
) -> tuple[dict[str, str], dict[str, float], dict[str, str], dict[str, float]]:
    """By cross-validation on the train rows: each method's best setting and its mean C-index over the folds and
    seeds, and each ε's best DP setting (strategy included) and score."""
    methods = [(m, s) for m in MODELS for s in ("pooled", "local", *STRATEGIES)]
    runs = [(m, s, c, seed, None) for m, s in methods for c in CANDIDATES for seed in seeds]
    dp_keys = [("discrete", str(DP_CANDIDATES[c]["strategy"]), c) for c in DP_CANDIDATES]
    runs += [(*key, seed, eps) for eps in EPSILONS for key in dp_keys for seed in seeds]
    scores = cross_validate(table, work, folds, runs)

    def best(keys: list[tuple[str, str, str, float | None]]) -> tuple[str, float]:
        means = {key: float(np.mean([scores[(*key[:3], seed, key[3])] for seed in seeds])) for key in keys}
        key = max(means, key=means.get)
        return key[2], means[key]

    chosen, valid = {}, {}
    for model, method in methods:
        name = f"{model}-{method}"
        chosen[name], valid[name] = best([(model, method, c, None) for c in CANDIDATES])
    dp_chosen, dp_valid = {}, {}
    for eps in EPSILONS:
        dp_chosen[f"{eps:g}"], dp_valid[f"{eps:g}"] = best([(*key, eps) for key in dp_keys])
    return chosen, valid, dp_chosen, dp_valid


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation and the per-seed values."""
    return {"c_index": float(np.mean(values)), "sd": float(np.std(values)), "per_seed": values}


def run(data: Path, work: Path, seeds: list[int], validation_seeds: list[int], folds: int) -> dict[str, Any]:
    """Choose every setting by cross-validation, then score each method and ε on FLamby's test split over `seeds`."""
    table = read_brca(data)
    chosen, valid, dp_chosen, dp_valid = choose(table, work / "validation", validation_seeds, folds)
    federated_names = [n for n in chosen if n.split("-", 1)[1] in STRATEGIES]
    recommended = max(federated_names, key=valid.get)
    sites = write_sites(table, work / "sites")
    runs = [(*name.split("-", 1), chosen[name], seed, None) for name in chosen for seed in seeds]
    dp_strategy = {e: str(DP_CANDIDATES[dp_chosen[f"{e:g}"]]["strategy"]) for e in EPSILONS}
    runs += [("discrete", dp_strategy[e], dp_chosen[f"{e:g}"], seed, e) for e in EPSILONS for seed in seeds]
    scores = evaluate(table, sites, work / "test", runs)
    n = len(seeds)
    methods = {name: spread(scores[i * n : (i + 1) * n]) for i, name in enumerate(chosen)}
    offset = len(chosen) * n
    dp = {f"{e:g}": spread(scores[offset + i * n : offset + (i + 1) * n]) for i, e in enumerate(EPSILONS)}
    for name in methods:
        methods[name].update({"setting": chosen[name], "validation_c_index": valid[name]})
    for e in EPSILONS:
        key = f"{e:g}"
        dp[key].update(
            {"method": f"discrete-{dp_strategy[e]}", "setting": dp_chosen[key], "validation_c_index": dp_valid[key]}
        )
    return {
        "recommended": recommended,
        "chosen_by": f"highest mean validation C-index over {folds}-fold cross-validation on the train rows (each "
        f"region's events and censored rows dealt over the folds, shuffle seed {VALIDATION_SEED}) and training seeds "
        f"{validation_seeds}, among the federated methods; FLamby's test rows unused",
        "methods": methods,
        "dp": dp,
        "candidates": CANDIDATES,
        "dp_candidates": DP_CANDIDATES,
        "seeds": seeds,
        "flamby_published": FLAMBY,
    }


def main(
    data: Annotated[Path, typer.Option(help="Folder with FLamby's brca.csv and train_test_split.csv")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    seeds: Annotated[
        str, typer.Option(help="Training seeds on the test split (init, batch order, noise)")
    ] = "1,2,3,4,5",
    validation_seeds: Annotated[str, typer.Option(help="Training seeds when choosing on validation")] = "1",
    folds: Annotated[int, typer.Option(help="Cross-validation folds of the train rows that choose the settings")] = 3,
) -> None:
    """Run the benchmark and print medfed's figures beside FLamby's."""
    started = time.perf_counter()
    torch.set_num_threads(1)  # tiny models: on a few shared cores, more threads only contend
    with tempfile.TemporaryDirectory() as tmp:
        results = run(
            data, Path(tmp), [int(s) for s in seeds.split(",")], [int(s) for s in validation_seeds.split(",")], folds
        )
    results["wall_s"] = round(time.perf_counter() - started, 1)
    _print(results)
    if out:
        out.write_text(json.dumps(results, indent=2))


def _print(results: dict[str, Any]) -> None:
    table = Table(title=f"Fed-TCGA-BRCA: mean over regions of the test C-index, seeds {results['seeds']}")
    for column in ("method", "C-index", "sd", "setting", "validation"):
        table.add_column(column, justify="right")
    rows = [(n + (" (recommended)" if n == results["recommended"] else ""), r) for n, r in results["methods"].items()]
    rows += [(f"{r['method']} local DP ε={e}", r) for e, r in results["dp"].items()]
    for name, r in rows:
        table.add_row(name, f"{r['c_index']:.3f}", f"{r['sd']:.3f}", r["setting"], f"{r['validation_c_index']:.3f}")
    Console().print(table)
    Console().print("FLamby published: " + ", ".join(f"{k} {v:.3f}" for k, v in results["flamby_published"].items()))


if __name__ == "__main__":
    typer.run(main)
