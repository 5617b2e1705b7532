"""How close the site's training-memory figure (shared.tasks.footprint) comes to what one training step really holds.

    python -m simulations.benchmarks.footprint --out footprint.json

Each setting runs in a fresh process on the CPU: the study's model is measured on the meta device, then built for
real and trained for one step on one batch (Adam; under local DP through medfed's SitePrivacy and Opacus), and the
growth of the process's peak resident memory over the step's setup is the measured figure. The loss is the mean
square of the outputs, the same cost for every task; the data, like the figure, is one batch.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# name: (task, {section: {key: value}})
SETTINGS = {
    "tabular mlp 2048x2048": ("tabular", {"model": {"hidden": [2048, 2048]}}),
    "tabular mlp 1024x1024, local DP": ("tabular", {"model": {"hidden": [1024, 1024]}, "privacy": {"mode": "local"}}),
    "imaging cnn 128 px": ("imaging", {"data": {"image-size": 128}}),
    "imaging cnn 256 px": ("imaging", {"data": {"image-size": 256}}),
    "imaging cnn 128 px, local DP": ("imaging", {"data": {"image-size": 128}, "privacy": {"mode": "local"}}),
    "imaging resnet18 w32 128 px": (
        "imaging",
        {"data": {"image-size": 128}, "model": {"name": "resnet18", "width": 32}},
    ),
    "segmentation 128 px": ("segmentation", {"data": {"image-size": 128}}),
    "text 256 tokens": ("text", {"data": {"max-length": 256}}),
    "text 1024 tokens": ("text", {"data": {"max-length": 1024}}),
    "pretrained BERT-base, 2 layers trained, 512 tokens": (
        "text",
        {"data": {"max-length": 512}, "model": {"name": "pretrained", "encoder": "bert", "trainable-layers": 2}},
    ),
    "pretrained BERT-base, 12 layers trained, 128 tokens": (
        "text",
        {"data": {"max-length": 128}, "model": {"name": "pretrained", "encoder": "bert", "trainable-layers": 12}},
    ),
    "pretrained BERT-base, 12 layers trained, 512 tokens": (
        "text",
        {"data": {"max-length": 512}, "model": {"name": "pretrained", "encoder": "bert", "trainable-layers": 12}},
    ),
}
# name: (task, image size or note length the study asks for, how the site's data is stored)
DATA_SETTINGS = {
    "imaging: 2,000 28-px images (.npz) at 256 px": ("imaging", 256, "npz"),
    "imaging: 2,000 28-px images (.npz) at 512 px": ("imaging", 512, "npz"),
    "imaging: 2,000 28-px PNG files at 256 px": ("imaging", 256, "png"),
    "segmentation: 1,000 28-px images and masks (.npz) at 256 px": ("segmentation", 256, "npz"),
    "text: 900 notes at 4,096 tokens": ("text", 4096, "csv"),
    "multimodal: the demo's patients, images at 256 px": ("multimodal", 256, "csv"),
}
console = Console()


def measure(task_name: str, changes: dict) -> dict[str, float]:
    """In this process: the figure, then one real training step's peak memory growth, in MiB."""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from shared.config import StudyConfig
    from shared.privacy.caps import PrivacyCaps
    from shared.privacy.journal import LedgerFiles
    from shared.privacy.site import SitePrivacy
    from shared.tasks import build_model, get_task
    from shared.tasks.footprint import model_footprint
    from shared.training import make_loader, make_optimizer

    class SquareLoss(nn.Module):
        def forward(self, out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return out.float().square().mean()

    raw = get_task(task_name).demo_study().to_dict()
    for section, values in changes.items():
        raw[section].update(values)
    if raw["model"].get("name") == "pretrained":
        raw["train"]["batch-size"] = 8
        _offer_bert(Path(tempfile.mkdtemp()))
    study = StudyConfig.from_dict(raw)
    size = model_footprint(study)
    batch = study.train.batch_size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the batch counts, as in the figure
    data = TensorDataset(get_task(task_name).example_input(study, batch), torch.zeros(batch))
    model = build_model(study).train()  # as training runs it (a loaded encoder comes in eval mode)
    optimizer, loader, loss_fn = make_optimizer(model, study.train), make_loader(data, batch, 0), SquareLoss()
    if study.privacy.mode == "local":
        with tempfile.TemporaryDirectory() as ledgers:
            site = SitePrivacy(study, "bench", LedgerFiles.at(Path(ledgers), "bench"), PrivacyCaps(), 10 * batch)
            model, optimizer, loader, loss_fn = site.make_private(model, optimizer, loader, loss_fn)
    x, y = next(iter(loader))
    loss_fn(model(x), y).backward()
    optimizer.step()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # Linux reports KiB
    return {"estimate_mib": size.training_mib, "measured_mib": grown, "ratio": size.training_mib / grown}


def _offer_bert(folder: Path) -> None:
    """A randomly initialised encoder of BERT-base's sizes with a two-word tokenizer, offered as 'bert'."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel

    from shared.models import OfferedModel, offer

    tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    BertModel(BertConfig()).save_pretrained(folder)
    offer({"bert": OfferedModel(folder)})


def measure_data(task_name: str, size: int, stored: str, folder: str) -> dict[str, float]:
    """In this process: the data figure for the site's examples at the study's size, then loading them for real
    (`Task.load_site`); the growth of peak memory over the load is the measured figure."""
    from PIL import Image

    from shared.config import StudyConfig
    from shared.tasks import get_task
    from shared.tasks.counting import count_examples
    from shared.tasks.footprint import model_footprint
    from shared.tasks.imaging.demo import synthetic_images, write_demo_sites

    task, root = get_task(task_name), Path(folder)
    raw = task.demo_study().to_dict()
    raw["data"]["max-length" if task_name == "text" else "image-size"] = size
    study = StudyConfig.from_dict(raw)
    if stored == "csv":  # the task's own demo table
        path = task.write_demo_sites(root, 1)[0]
    elif stored == "npz":
        n = 2000 if task_name == "imaging" else 1000
        path = write_demo_sites(root, 1, n_images=n, target="label" if task_name == "imaging" else "mask")[0]
    else:
        path = root / "images"
        path.mkdir()
        images, labels, _ = synthetic_images(2000, seed=2)
        for i, image in enumerate(images):
            Image.fromarray(image).save(path / f"{i}.png")
        classes = task.demo_study().data["classes"]
        rows = "".join(f"{i}.png,{classes[label]}\n" for i, label in enumerate(labels))
        (path / "labels.csv").write_text("file,label\n" + rows)
    examples = count_examples(path)
    figure = model_footprint(study).data_mib(examples)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    task.load_site(path, "bench", study)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"examples": examples, "estimate_mib": figure, "measured_mib": grown, "ratio": figure / grown}


def _in_fresh_process(call: str) -> dict[str, float]:
    code = f"import json; from simulations.benchmarks.footprint import *; print(json.dumps({call}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(out: Annotated[Path, typer.Option(help="JSON results")] = Path("footprint.json")) -> None:
    """Every setting in its own process, the figure beside the measured peak."""
    results, data = {}, {}
    for name, (task_name, changes) in SETTINGS.items():
        results[name] = r = _in_fresh_process(f"measure({task_name!r}, {changes!r})")
        console.print(
            f"{name}: figure {r['estimate_mib']:,.0f} MiB, measured {r['measured_mib']:,.0f} MiB, x{r['ratio']:.2f}"
        )
    for name, (task_name, size, stored) in DATA_SETTINGS.items():
        with tempfile.TemporaryDirectory() as folder:
            data[name] = r = _in_fresh_process(f"measure_data({task_name!r}, {size}, {stored!r}, {folder!r})")
        console.print(
            f"{name}: {r['examples']} examples, figure {r['estimate_mib']:,.0f} MiB, "
            f"measured {r['measured_mib']:,.0f} MiB, x{r['ratio']:.2f}"
        )
    ratios, data_ratios = [r["ratio"] for r in results.values()], [r["ratio"] for r in data.values()]
    summary = {
        "settings": results,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "data": data,
        "data_median_ratio": statistics.median(data_ratios),
        "data_min_ratio": min(data_ratios),
    }
    out.write_text(json.dumps(summary, indent=2))
    console.print(f"figure / measured: median x{summary['median_ratio']:.2f}, lowest x{summary['min_ratio']:.2f}")
    console.print(
        f"data figure / measured: median x{summary['data_median_ratio']:.2f}, lowest x{summary['data_min_ratio']:.2f}"
    )


if __name__ == "__main__":
    typer.run(main)
