"""`medfed-site predict`: the final model applied to new patients at the site, their rows prepared exactly as the
site's training rows were. It runs locally and sends nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from client.admission import admit_model
from client.kept import load_kept
from client.site import SiteConfig
from shared.arrays import load_model_file
from shared.atomic import atomic_write
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.errors import DataError
from shared.tasks import build_model, get_task

BATCH = 256


def predict_file(
    study: StudyConfig, model_file: Path, data: Path, site: SiteConfig, id_column: str | None = None
) -> pd.DataFrame:
    """One row per input row (or image): its id, then the task's prediction columns."""
    task = get_task(study.task)
    admit_model(study, site, data)  # the size the site's policy allows; its own [models] for a pretrained encoder
    model = build_model(study)
    load_model_file(model, model_file)
    kept = load_kept(site, study, required=task.keeps_statistics)
    new = task.new_inputs(data, site.name, study, kept, id_column)
    if not new.usable.any():
        raise DataError(site.name, "holds no row the model can score (each is one training would drop)", str(data))
    device = resolve_device(site.device)
    model.to(device).eval()
    with torch.no_grad():
        batches = [model(new.inputs[i : i + BATCH].to(device)).cpu() for i in range(0, len(new.inputs), BATCH)]
    columns = task.prediction_columns(study, torch.cat(batches).double().numpy(), kept)
    predicted = pd.DataFrame(columns, index=np.flatnonzero(new.usable))
    # A row training would have dropped keeps its place, with empty cells.
    ids = pd.DataFrame({id_column or new.id_name: new.ids})
    return pd.concat([ids, predicted.reindex(range(len(new.ids)))], axis=1)


def write_predictions(frame: pd.DataFrame, out: Path) -> Path:
    """The predictions as CSV, written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda p: frame.to_csv(p, index=False))
