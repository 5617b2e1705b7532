"""`medfed-site predict`: the final model applied to new patients at the site, their rows prepared exactly as the
site's training rows were. It runs locally and sends nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from client.kept import load_kept
from client.site import SiteConfig
from shared.arrays import load_model_file
from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.models import offer
from shared.tasks import build_model, get_task

BATCH = 256


def predict_file(
    study: StudyConfig, model_file: Path, data: Path, site: SiteConfig, id_column: str | None = None
) -> pd.DataFrame:
    """One row per input row (or image): its id, then the task's prediction columns."""
    task = get_task(study.task)
    task.check_study(study)
    offer(site.models)  # a pretrained encoder resolves through the site's own [models], as in training
    model = build_model(study)
    load_model_file(model, model_file)
    kept = load_kept(site, study) if task.keeps_statistics else {}
    ids, inputs = task.new_inputs(data, site.name, study, kept, id_column)
    device = resolve_device(site.device)
    model.to(device).eval()
    with torch.no_grad():
        outputs = torch.cat([model(inputs[i : i + BATCH].to(device)).cpu() for i in range(0, len(inputs), BATCH)])
    return pd.DataFrame({id_column or "row": ids, **task.prediction_columns(study, outputs.double().numpy())})


def write_predictions(frame: pd.DataFrame, out: Path) -> Path:
    """The predictions as CSV, written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda p: frame.to_csv(p, index=False))
