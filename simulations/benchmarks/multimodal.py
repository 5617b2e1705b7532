"""Multimodal fusion: GSE7390 (real patients: clinical record + 76 gene-expression probes) over 3 simulated hospitals,
the synthetic image + note + record demo, and DP / non-DP training throughput of the fused model.

    python -m simulations.benchmarks.multimodal --out multimodal.json [--seeds 10] [--parts gse7390,demo,dp-ratio]

Federated runs are FedAvg rounds run in-process: each site trains the global model on its own data and weighs its
reply as a site does (`MultimodalTask.reply_arrays`), and the server averages the replies and divides each encoder by
its coverage as its aggregation does (`shared.groups`). Without Ray and the wire, 10 seeds x every model fit on two
cores; the arithmetic is the simulation's. AUC and accuracy are computed over the union of the three hospitals' held-out
splits (each patient scored by the model of the method: the federated model, the pooled one, or its own hospital's).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from rich.console import Console
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import ConcatDataset

from client.site import SiteConfig
from shared.arrays import load_arrays, model_arrays
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.groups import divide_groups
from shared.privacy.site import grad_sample_mode
from shared.tasks import SiteData, build_model, get_task
from shared.tasks.multimodal import demo
from shared.training import make_loader, make_optimizer, predict, train_epochs
from simulations.baselines import fit_central
from simulations.benchmarks.dp_throughput import epoch_rate
from simulations.scenario import site_groups, write_sites

CLINICAL = ["age", "size", "grade", "er"]
GSE_CATEGORIES = {
    "grade": ["well differentiated", "intermediate", "poorly differentiated", "unkown"],  # the data's own spelling
    "er": ["negative", "positive"],
}
HORIZON_DAYS = 5 * 365.25
GSE_SETS = {"records": ("record",), "genes": ("omics",), "fused": ("record", "omics")}
DEMO_SETS = {
    "record": ("record",),
    "image": ("image",),
    "note": ("note",),
    "image+note": ("image", "note"),
    "fused": ("record", "image", "note"),
}
TASK = get_task("multimodal")
# The hospital without genes, each in turn: fused and records-only AUC on its held-out patients, their paired
# difference, and the fused model over all three hospitals.
NO_GENES = ("fused, site without genes", "records, same site", "fused minus records, same site", "fused, all")
PARTS = ("gse7390", "demo", "dp-ratio")
DP_BATCH = 32


def gse7390() -> pd.DataFrame:
    """GSE7390 from scikit-survival's wheel: 4 clinical variables, 76 probes, and `metastasis` within 5 years (yes/no);
    patients censored before 5 years are left out (their 5-year status is unknown)."""
    from sksurv.datasets import load_breast_cancer

    x, y = load_breast_cancer()
    table = x.copy()
    table["er"], table["grade"] = table["er"].astype(str), table["grade"].astype(str)
    event, time_days = y["e.tdm"], y["t.tdm"]
    known = event & (time_days <= HORIZON_DAYS) | (time_days > HORIZON_DAYS)
    table["metastasis"] = np.where(event & (time_days <= HORIZON_DAYS), "yes", "no")
    return table[known].reset_index(drop=True)


def gse_study(modalities: tuple[str, ...], genes: list[str], seed: int, rounds: int) -> StudyConfig:
    """Records, genes or both; the genes through the omics encoder (input dropout), weight decay for 76 probes."""
    data = {
        "label": "metastasis",
        "classes": ["no", "yes"],
        "features": CLINICAL if "record" in modalities else [],
        "categorical": GSE_CATEGORIES if "record" in modalities else {},
        "omics": genes if "omics" in modalities else [],
        "test-fraction": 0.3,
        "min-patients": 5,
    }
    return StudyConfig.from_dict(
        {
            "name": "gse7390",
            "task": "multimodal",
            "seed": seed,
            "federation": {"strategy": "fedavg", "rounds": rounds, "min-sites": 3},
            "train": {"local-epochs": 1, "batch-size": 16, "lr": 0.005, "weight-decay": 1e-3},
            "model": {"embedding": 8, "head-hidden": 8, "record-hidden": [16], "omics-hidden": [16]},
            "data": data,
        }
    )


def federate(study: StudyConfig, sites: list[SiteData]) -> nn.Module:
    """FedAvg rounds in-process: local training and reply weighting as at a site, per-modality division as at the
    server."""
    task, device = get_task(study.task), resolve_device("auto")
    torch.manual_seed(study.seed)
    model = build_model(study)
    arrays = model_arrays(model)
    for rnd in range(1, study.federation.rounds + 1):
        replies = []
        for data in sites:
            load_arrays(model, arrays)
            loader = make_loader(data.train, study.train.batch_size, seed=study.seed * 100_003 + rnd)
            loss = task.train_loss(study, data.train)  # class-weighted as at a site
            train_epochs(model, loader, loss, make_optimizer(model, study.train), study.train.local_epochs, device)
            sent = task.reply_arrays(study, model, data, arrays)
            replies.append(RecordDict({"arrays": sent, "metrics": MetricRecord({"num-examples": len(data.train)})}))
        arrays = divide_groups(aggregate_arrayrecords(replies, "num-examples"), arrays)
    load_arrays(model, arrays)
    return model


def scored(study: StudyConfig, models: list[nn.Module], sites: list[SiteData]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and positive-class probabilities over the sites' held-out splits, site i scored by models[i]."""
    device, loss = resolve_device("auto"), TASK.loss(study)
    parts = [predict(m, d.test, loss, device)[1:] for m, d in zip(models, sites, strict=True)]
    return np.concatenate([y for y, _ in parts]), np.concatenate([p[:, 1] for _, p in parts])


def methods(study: StudyConfig, sites: list[SiteData]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Federated, pooled and local-only predictions over the sites' held-out patients."""
    federated = federate(study, sites)
    pooled = fit_central(study, ConcatDataset([d.train for d in sites]))
    return {
        "federated": scored(study, [federated] * len(sites), sites),
        "pooled": scored(study, [pooled] * len(sites), sites),
        "local": scored(study, [fit_central(study, d.train) for d in sites], sites),
    }


def hospitals(table: pd.DataFrame, folder: Path, seed: int, n_sites: int = 3) -> list[SiteConfig]:
    """The table split at random (stratified by nothing, as hospitals are) into `n_sites` CSV files."""
    return write_sites(site_groups(table, "gse7390", "metastasis", "", "iid", n_sites, 1.0, seed), folder)


def gse_benchmark(seeds: int, rounds: int, work: Path, console: Console) -> dict:
    """AUC of records, genes and fused models, federated / pooled / local, mean and SD over seeds; and the runs where
    one hospital holds no gene expression, each hospital in turn."""
    table = gse7390()
    genes = [c for c in table.columns if c not in (*CLINICAL, "metastasis")]
    aucs: dict[str, dict[str, list[float]]] = {k: {m: [] for m in ("federated", "pooled", "local")} for k in GSE_SETS}
    no_genes: dict[str, list[float]] = {k: [] for k in NO_GENES}
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in NO_GENES[:2]}
    for seed in range(seeds):
        sites = hospitals(table, work / f"seed-{seed}", seed)
        for name, modalities in GSE_SETS.items():
            study = gse_study(modalities, genes, seed, rounds)
            data = [TASK.load_site(s.data_path, s.name, study) for s in sites]
            for method, (y, p) in methods(study, data).items():
                aucs[name][method].append(auc(y, p))
        records = gse_study(("record",), [], seed, rounds)
        records_data = [TASK.load_site(s.data_path, s.name, records) for s in sites]
        model_r = federate(records, records_data)
        fused = gse_study(GSE_SETS["fused"], genes, seed, rounds)
        originals = [pd.read_csv(s.data_path) for s in sites]
        for without in range(len(sites)):
            # That hospital has no gene column: it trains the record encoder and the head, never the gene encoder.
            tables = list(originals)
            tables[without] = tables[without].drop(columns=genes)
            folder = work / f"seed-{seed}-without-{without}"
            fused_sites = write_sites([(s.name, t) for s, t in zip(sites, tables, strict=True)], folder)
            fused_data = [TASK.load_site(s.data_path, s.name, fused) for s in fused_sites]
            model_f = federate(fused, fused_data)
            scores = {
                NO_GENES[0]: scored(fused, [model_f], fused_data[without : without + 1]),
                NO_GENES[1]: scored(records, [model_r], records_data[without : without + 1]),
            }
            for key, (y, p) in scores.items():
                no_genes[key].append(auc(y, p))
                pooled[key].append((y, p))
            no_genes[NO_GENES[2]].append(no_genes[NO_GENES[0]][-1] - no_genes[NO_GENES[1]][-1])
            no_genes[NO_GENES[3]].append(auc(*scored(fused, [model_f] * len(sites), fused_data)))
        shown = ", ".join(f"{k} {v['federated'][-1]:.3f}" for k, v in aucs.items())
        console.print(f"gse7390 seed {seed}, federated AUC: {shown}")
    out = {k: {m: summary(v) for m, v in by.items()} for k, by in aucs.items()}
    out["no-genes-site"] = {k: summary(v) for k, v in no_genes.items()}
    for key, parts in pooled.items():
        out["no-genes-site"][key]["pooled-auc"] = auc(*(np.concatenate(x) for x in zip(*parts, strict=True)))
    out["patients"], out["positives"] = len(table), int((table["metastasis"] == "yes").sum())
    return out


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, NaN where the held-out patients hold one class only (a single hospital's split can)."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample SD over the seeds where the AUC is defined, and how many those are."""
    kept = [v for v in values if np.isfinite(v)]
    sd = float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0
    return {"auc": float(np.mean(kept)) if kept else float("nan"), "sd": sd, "seeds": len(kept)}


def demo_benchmark(work: Path, rounds: int, console: Console) -> dict:
    """Accuracy of a model trained on each modality set of the synthetic demo, federated over 3 hospitals; then the
    fused model with 30 % of images and of notes missing at random."""
    out = {}
    for missing in (0.0, 0.3):
        folder = work / f"demo-{missing}"
        paths = demo.write_demo_sites(folder, 3, n_patients=900, missing=missing)
        for name, modalities in DEMO_SETS.items() if missing == 0 else [("fused", DEMO_SETS["fused"])]:
            study = demo_set_study(modalities, rounds)
            sites = [TASK.load_site(p, p.stem, study) for p in paths]
            y, p = scored(study, [federate(study, sites)] * len(sites), sites)
            key = name if missing == 0 else f"fused, {missing:.0%} of images and notes missing"
            out[key] = float(((p > 0.5) == (y == 1)).mean())
            console.print(f"demo {key}: accuracy {out[key]:.3f}")
    return out


def demo_set_study(modalities: tuple[str, ...], rounds: int) -> StudyConfig:
    """The demo study with only the given modalities' columns named."""
    raw = demo.demo_study().to_dict()
    raw["federation"]["rounds"] = rounds
    data = raw["data"]
    data["features"] = data["features"] if "record" in modalities else []
    data["image-column"] = data["image-column"] if "image" in modalities else ""
    data["note-column"] = data["note-column"] if "note" in modalities else ""
    return StudyConfig.from_dict(raw)


def dp_ratio(work: Path, repeats: int = 3) -> dict:
    """Samples/s of one local epoch of the demo's fused model (one hospital of 600 patients, batch 32), without and
    with local DP (medfed's SitePrivacy, grad-sample mode "auto"), interleaved `repeats` times; medians, ratio and the
    mode "auto" chose."""
    path = demo.write_demo_sites(work / "dp", 1, n_patients=600)[0]
    study = demo.demo_study()
    data = TASK.load_site(path, "bench", study)
    device = resolve_device("auto")
    rates: dict[str, list[float]] = {"non-dp": [], "dp": []}
    for _ in range(repeats):
        for mode in rates:
            private = "auto" if mode == "dp" else None
            rates[mode].append(epoch_rate(lambda: build_model(study), data.train, DP_BATCH, private, work, device))
    median = {m: float(np.median(v)) for m, v in rates.items()}
    chosen = grad_sample_mode(build_model(study).to(device), "auto", DP_BATCH)
    return {"samples_per_s": median, "ratio": median["dp"] / median["non-dp"], "repeats": repeats, "mode": chosen}


def main(
    out: Annotated[Path, typer.Option(help="Write the results as JSON here")],
    seeds: Annotated[int, typer.Option(help="GSE7390 seeds (hospital splits and model initialisations)")] = 10,
    rounds: Annotated[int, typer.Option(help="GSE7390 federated rounds (1 local epoch each)")] = 20,
    demo_rounds: Annotated[int, typer.Option(help="Demo federated rounds (2 local epochs each)")] = 8,
    dp_repeats: Annotated[int, typer.Option(help="Interleaved DP / non-DP epochs; medians are reported")] = 3,
    parts: Annotated[str, typer.Option(help="Comma-separated parts to run, of " + ",".join(PARTS))] = ",".join(PARTS),
) -> None:
    """Run the chosen parts (default: every part) and write the JSON the issue asks for."""
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    if not chosen or set(chosen) - set(PARTS):
        raise typer.BadParameter(f"choose from {', '.join(PARTS)}; got {parts!r}", param_hint="--parts")
    console = Console()
    torch.set_num_threads(1)
    options = f"--seeds {seeds} --rounds {rounds} --demo-rounds {demo_rounds} --dp-repeats {dp_repeats}"
    results: dict = {"command": f"python -m simulations.benchmarks.multimodal --out {out} {options} --parts {parts}"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "dp-ratio" in chosen:
            results["dp-ratio-detail"] = dp_ratio(work, dp_repeats)
            results["dp-ratio"] = results["dp-ratio-detail"]["ratio"]
            out.write_text(json.dumps(results, indent=2))
        if "demo" in chosen:
            results["demo"] = demo_benchmark(work, demo_rounds, console)
            out.write_text(json.dumps(results, indent=2))
        if "gse7390" in chosen:
            results["gse7390"] = gse_benchmark(seeds, rounds, work, console)
    out.write_text(json.dumps(results, indent=2))
    console.print_json(json.dumps(results))


if __name__ == "__main__":
    typer.run(main)
