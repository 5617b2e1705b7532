"""DP-SGD vs non-private training throughput, same data, model and batch size, measured side by side.

    python -m simulations.benchmarks.dp_throughput --out dp_throughput.json

Each repeat trains one epoch non-privately, then one epoch per DP mode, interleaved so that machine noise hits
all of them alike; samples/s are medians over repeats. DP runs use medfed's SitePrivacy (Opacus, Poisson sampling).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import TensorDataset

from shared.config import PrivacyConfig, TrainConfig
from shared.device import resolve_device
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerFiles
from shared.privacy.site import SitePrivacy
from shared.tasks.imaging.model import build_cnn
from shared.tasks.imaging.spec import ImagingModelSpec
from shared.tasks.tabular.demo import demo_study
from shared.tasks.text.model import TextTransformer
from shared.tasks.text.spec import TextModelSpec
from shared.training import make_loader, make_optimizer, train_epochs


def _medfed_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(30, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2)
    )


def _text_transformer() -> nn.Module:
    return TextTransformer(TEXT_VOCAB, TEXT_LENGTH, 5, TextModelSpec(dim=64, layers=2, heads=4), pad_id=0)


TEXT_VOCAB, TEXT_LENGTH = 32768, 256

# name -> (model factory, inputs for n rows, rows per epoch)
MODELS = {
    # The tabular MLP of the reference measurement, medfed's default tabular MLP, logistic regression,
    # medfed's imaging CNN on 28x28 grayscale images, and the text task's 2-layer Transformer on 256 hashed tokens.
    "tabular MLP 30-64-64-2": (
        lambda: nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)),
        lambda n: torch.randn(n, 30),
        4096,
    ),
    "medfed MLP 30-64-32-2": (_medfed_mlp, lambda n: torch.randn(n, 30), 4096),
    "logistic regression 30-2": (lambda: nn.Sequential(nn.Linear(30, 2)), lambda n: torch.randn(n, 30), 4096),
    "imaging CNN 1x28x28": (lambda: build_cnn(1, 2, ImagingModelSpec()), lambda n: torch.rand(n, 1, 28, 28), 1024),
    "text Transformer 2x64, 256 tokens": (
        _text_transformer,
        lambda n: torch.randint(1, TEXT_VOCAB, (n, TEXT_LENGTH)),
        512,
    ),
}


def epoch_rate(
    model_fn, data: TensorDataset, batch: int, mode: str | None, ledger: Path, device: torch.device
) -> float:
    """Samples per second of one training epoch; `mode` None is non-private."""
    torch.manual_seed(0)
    model = model_fn().to(device)
    settings = TrainConfig(batch_size=batch, lr=0.01)
    optimizer, loader, loss, empty = (
        make_optimizer(model, settings),
        make_loader(data, batch, 0),
        nn.CrossEntropyLoss(),
        None,
    )
    if mode is not None:
        base = demo_study()
        study = dataclasses.replace(
            base,
            train=settings,
            privacy=PrivacyConfig(mode="local", epsilon=8.0, noise_multiplier=1.0, grad_sample_mode=mode),
        )
        site = SitePrivacy(study, "bench", LedgerFiles.at(ledger, "bench"), PrivacyCaps(), len(data))
        model, optimizer, loader, loss = site.make_private(model, optimizer, loader, loss)
        empty = site.empty_batch_step()
    started = time.perf_counter()
    train_epochs(model, loader, loss, optimizer, 1, device, empty_batch_step=empty)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(data) / (time.perf_counter() - started)


def measure(models: list[str], batches: list[int], modes: list[str], repeats: int, device: torch.device) -> list[dict]:
    """One row per (model, batch size): non-DP and per-mode samples/s and DP / non-DP ratios."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            model_fn, inputs, n_rows = MODELS[name]
            data = TensorDataset(inputs(n_rows), torch.randint(0, 2, (n_rows,)))
            for batch in batches:
                rates: dict[str, list[float]] = {m: [] for m in ["non-dp", *modes]}
                for _ in range(repeats):
                    for mode in rates:
                        private = None if mode == "non-dp" else mode
                        rates[mode].append(epoch_rate(model_fn, data, batch, private, Path(tmp), device))
                median = {m: float(np.median(v)) for m, v in rates.items()}
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "samples_per_s": median,
                        "ratio": {m: median[m] / median["non-dp"] for m in modes},
                    }
                )
    return rows


def main(
    models: Annotated[str, typer.Option(help="'all' or model names separated by ';'")] = "all",
    batches: Annotated[str, typer.Option(help="Batch sizes")] = "64,256",
    modes: Annotated[str, typer.Option(help="grad-sample modes; auto is medfed's choice")] = "auto,ew,hooks,ghost",
    repeats: Annotated[int, typer.Option(help="Interleaved repeats; medians are reported")] = 5,
    threads: Annotated[int, typer.Option(help="torch threads")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Measure and print DP / non-DP throughput ratios."""
    torch.set_num_threads(threads)
    mode_list = modes.split(",")
    target = resolve_device(device)
    chosen = list(MODELS) if models == "all" else [m.strip() for m in models.split(";")]
    rows = measure(chosen, [int(b) for b in batches.split(",")], mode_list, repeats, target)
    table = Table(title=f"DP-SGD / non-private samples/s on {target} ({threads} torch thread(s), median of {repeats})")
    for column in ("model", "batch", "non-DP samples/s", *[f"{m} ratio" for m in mode_list]):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["model"],
            str(r["batch"]),
            f"{r['samples_per_s']['non-dp']:,.0f}",
            *[f"{r['ratio'][m]:.2f}" for m in mode_list],
        )
    Console().print(table)
    if out:
        out.write_text(
            json.dumps({"device": str(target), "threads": threads, "repeats": repeats, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    typer.run(main)
