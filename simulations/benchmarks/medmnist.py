"""MedMNIST BreastMNIST / PneumoniaMNIST over simulated hospitals, scored on the official test split.

    python -m simulations.benchmarks.medmnist --data ../shared/data/medmnist --out medmnist.json

Each site holds its share (IID or Dirichlet label skew) of the official train + val images; the final federated,
pooled and local-only models are all scored on the official test images. DP runs use local DP-SGD at each site.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from client.site import SiteConfig
from shared.arrays import load_model_file
from shared.config import PrivacyConfig, StudyConfig
from shared.device import resolve_device
from shared.partition import partition
from shared.tasks import SiteData, build_model, get_task
from shared.tasks.imaging.data import ImageDataset, to_image_tensor
from shared.tasks.imaging.spec import data_spec
from shared.training import predict
from simulations.baselines import fit_and_score
from simulations.runner import simulate

# MedMNIST v2 paper (Yang et al. 2023), ResNet-18 (28), centralized.
PAPER = {"breastmnist": {"accuracy": 0.863, "roc-auc": 0.901}, "pneumoniamnist": {"accuracy": 0.854, "roc-auc": 0.944}}


# Rounds x local epochs per set, chosen on the official validation split (training on the train split only): the
# best validation AUC, ties broken by validation accuracy (BENCHMARKS.md lists every schedule tried).
SCHEDULE = {"breastmnist": (20, 5), "pneumoniamnist": (10, 2)}


def medmnist_study(name: str, seed: int = 0) -> StudyConfig:
    """The imaging defaults on one MedMNIST set (binary labels 0/1, 28x28 grayscale)."""
    rounds, epochs = SCHEDULE[name]
    return StudyConfig.from_dict(
        {
            "name": f"medmnist-{name}",
            "task": "imaging",
            "seed": seed,
            "federation": {"strategy": "fedavg", "rounds": rounds, "min-sites": 2},
            # Unweighted, and no validation split: every model here is scored on the official test split at 0.5,
            # as when the schedules were chosen (the data run's defaults are benchmarked apart, BENCHMARKS.md).
            "train": {"local-epochs": epochs, "batch-size": 32, "lr": 0.003, "class-weights": "none"},
            "model": {"name": "cnn", "width": 16},
            "data": {
                "classes": [0, 1],
                "image-size": 28,
                "channels": 1,
                "test-fraction": 0.1,
                "validation-fraction": 0.0,
            },
        }
    )


def write_sites(archive, folder: Path, n_sites: int, scheme: str, seed: int) -> list[SiteConfig]:
    """Each hospital's share of train + val as a .npz with train_* keys (the site splits off its own held-out)."""
    x = np.concatenate([archive["train_images"], archive["val_images"]])
    y = np.concatenate([archive["train_labels"], archive["val_labels"]]).reshape(-1)
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    for i, rows in enumerate(partition(y, n_sites, scheme, seed=seed, alpha=0.5, min_rows=40), start=1):
        path = folder / f"hospital-{i}.npz"
        np.savez(path, train_images=x[rows], train_labels=y[rows, None])
        sites.append(SiteConfig(path.stem, path))
    return sites


def official_test(archive, study: StudyConfig) -> ImageDataset:
    """The official test images as the study sees them."""
    return ImageDataset(
        to_image_tensor(archive["test_images"], data_spec(study)),
        torch.from_numpy(archive["test_labels"].reshape(-1).astype(np.int64)),
        augment=False,
    )


def score_file(study: StudyConfig, model_file: Path, test: ImageDataset) -> dict[str, float]:
    """Accuracy and AUC of a saved global model on the official test split."""
    model = build_model(study)
    load_model_file(model, model_file)
    task = get_task("imaging")
    _, y, probs = predict(model, test, task.loss(), resolve_device("auto"))
    return {k: v for k, v in task.metrics(study, y, probs).items() if k in ("accuracy", "roc-auc")}


def run_dataset(path: Path, work: Path, n_sites: int, epsilons: list[float]) -> dict:
    """Federated (non-DP and DP) per split, pooled and local-only, on one MedMNIST file."""
    name = path.stem
    archive = np.load(path)
    base = medmnist_study(name)
    test = official_test(archive, base)
    out: dict = {}
    for scheme in ("iid", "dirichlet"):
        sites = write_sites(archive, work / name / scheme / "sites", n_sites, scheme, base.seed)
        for eps in [None, *epsilons]:
            study = base if eps is None else dataclasses.replace(base, privacy=PrivacyConfig(mode="local", epsilon=eps))
            key = f"{scheme} federated" + ("" if eps is None else f" DP ε={eps:g}")
            folder = work / name / scheme / key.replace(" ", "-")
            simulate(study, [dataclasses.replace(s, ledger_dir=folder / "ledgers") for s in sites], folder)
            history = json.loads((folder / "history.json").read_text())
            peak = max(r.get("peak-rss-mb", 0.0) for r in history["metrics"] if r["site"] != "weighted")
            out[key] = {
                **score_file(study, folder / "model.safetensors", test),
                "peak_site_rss_mb": peak,
                "status": history["status"],
            }
        data = [get_task("imaging").load_site(s.data_path, s.name, base) for s in sites]
        local = [fit_and_score(base, d.train, {"test": SiteData(d.train, test)})["test"] for d in data]
        out[f"{scheme} local-only (mean over sites)"] = {
            k: float(np.mean([m[k] for m in local])) for k in ("accuracy", "roc-auc")
        }
    pooled = torch.utils.data.ConcatDataset([d.train for d in data])
    out["pooled"] = {
        k: v
        for k, v in fit_and_score(base, pooled, {"test": SiteData(pooled, test)})["test"].items()
        if k in ("accuracy", "roc-auc")
    }
    return out


def main(
    data: Annotated[Path, typer.Option(help="Folder with breastmnist.npz and pneumoniamnist.npz")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    sites: Annotated[int, typer.Option(help="Simulated hospitals")] = 3,
    epsilons: Annotated[str, typer.Option(help="Local-DP budgets per site (δ = 1e-5)")] = "3,8",
    sets: Annotated[str, typer.Option(help="Which MedMNIST sets, comma-separated")] = ",".join(PAPER),
) -> None:
    """Run every method on both sets and print them beside the MedMNIST v2 paper's ResNet-18 (28)."""
    eps = [float(e) for e in epsilons.split(",") if e]
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run_dataset(data / f"{name}.npz", Path(tmp), sites, eps) for name in sets.split(",")}
    for name, rows in results.items():
        table = Table(
            title=f"{name}: official test split (paper ResNet-18 (28): ACC {PAPER[name]['accuracy']}, "
            f"AUC {PAPER[name]['roc-auc']})"
        )
        for column in ("method", "accuracy", "AUC", "peak RSS per site (MB)"):
            table.add_column(column, justify="right")
        for method, r in rows.items():
            table.add_row(
                method,
                f"{r['accuracy']:.3f}",
                f"{r['roc-auc']:.3f}",
                f"{r['peak_site_rss_mb']:.0f}" if "peak_site_rss_mb" in r else "-",
            )
        Console().print(table)
    if out:
        out.write_text(json.dumps({**results, "paper_resnet18_28": PAPER}, indent=2))


if __name__ == "__main__":
    typer.run(main)
