"""Read, validate, split and pack one site's patients: the record as a table, images from files inside the site's
data folder, notes tokenized, omics columns standardised; each modality's presence per patient."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.tasks.base import SiteData
from shared.tasks.imaging.files import UnreadableImage, read_image, resize
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.spec import MODALITIES, MultimodalSpec
from shared.tasks.tabular.data import encode_features, failer, first_row, numeric_column, split_rows, usable_rows
from shared.tasks.tabular.spec import FeatureSpec
from shared.tasks.tabular.table import read_table, row_list
from shared.tasks.text.tokenizer import Tokenizer, encode, framing


def load_multimodal_site(path: Path, site: str, spec: MultimodalSpec, tokenizer: Tokenizer, seed: int) -> SiteData:
    """The site's packed train/test rows (Layout) and labels, plus a local report with each modality's coverage;
    every problem names site, file, column and the first row at fault."""
    read = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal)
    frame, fail = read.frame, failer(site, str(path))
    held = site_modalities(frame, spec, fail)
    table, y, report = usable_rows(frame, str(path), spec, fail)
    report["notes"] = read.notes + report["notes"]
    train_idx, test_idx, _, _ = split_rows(table, y, spec, seed, site, str(path), report)
    layout = Layout.of(spec)
    rows = np.zeros((len(table), layout.width), dtype=np.float32)
    present = np.zeros((len(table), len(MODALITIES)), dtype=bool)
    parts = layout.parts
    if spec.features:
        x_train, x_test, _ = encode_features(table.iloc[train_idx], table.iloc[test_idx], spec)
        rows[train_idx, parts["record"]], rows[test_idx, parts["record"]] = x_train, x_test
        present[:, MODALITIES.index("record")] = True
    cells = frame.loc[table.index]
    if "omics" in held:
        rows[:, parts["omics"]], present[:, MODALITIES.index("omics")] = _omics(cells, spec, train_idx, fail)
    if "note" in held:
        rows[:, parts["note"]], present[:, MODALITIES.index("note")] = _notes(cells, spec, tokenizer, fail)
    if "image" in held:
        rows[:, parts["image"]], present[:, MODALITIES.index("image")] = _images(cells, spec, path, fail)
    present = _enough(present, train_idx, spec, report, fail)
    rows[:, parts["mask"]] = present
    report["coverage"] = {m: round(float(present[:, MODALITIES.index(m)].mean()), 4) for m in spec.modalities}
    x, labels = torch.from_numpy(rows), torch.from_numpy(y)
    return SiteData(
        train=TensorDataset(x[train_idx], labels[train_idx]),
        test=TensorDataset(x[test_idx], labels[test_idx]),
        report=report,
    )


def site_modalities(frame: pd.DataFrame, spec: MultimodalSpec, fail: Callable[..., NoReturn]) -> list[str]:
    """The study's modalities this site's table holds columns for; a required one it lacks, or only part of the
    omics columns, is refused."""
    held = ["record"] if spec.features else []
    for modality, column in (("image", spec.image_column), ("note", spec.note_column)):
        if column and column in frame.columns:
            held.append(modality)
    if spec.omics:
        missing = [c for c in spec.omics if c not in frame.columns]
        if len(missing) < len(spec.omics):
            if missing:
                fail(
                    f"lacks {len(missing)} of the study's {len(spec.omics)} omics columns (data.omics): "
                    f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; every site needs the same list"
                )
            held.append("omics")
    absent = [m for m in spec.required if m not in held]
    if absent:
        column = {"image": spec.image_column, "note": spec.note_column}.get(absent[0])
        fail(f"the study requires modality '{absent[0]}' (data.required) and this table has no column for it", column)
    return held


def _omics(
    cells: pd.DataFrame, spec: MultimodalSpec, train_idx: np.ndarray, fail: Callable[..., NoReturn]
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised omics values (a present patient's missing value imputed by the train median) and presence: a
    patient with no omics value at all lacks the modality."""
    values = pd.DataFrame({c: numeric_column(cells[c], fail, c) for c in spec.omics}, index=cells.index)
    present = values.notna().any(axis=1).to_numpy()
    out = np.zeros((len(values), len(spec.omics)), dtype=np.float32)
    fitted = train_idx[present[train_idx]]
    if len(fitted):
        block = FeatureSpec(features=list(spec.omics), missing="impute")
        _, encoded, _ = encode_features(values.iloc[fitted], values.iloc[np.flatnonzero(present)], block)
        out[present] = encoded
    return out, present


def _notes(
    cells: pd.DataFrame, spec: MultimodalSpec, tokenizer: Tokenizer, fail: Callable[..., NoReturn]
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (as floats) and presence: an empty cell, or one with no word (a pretrained tokenizer's special
    tokens only), is a patient without a note."""
    column = cells[spec.note_column]
    not_text = column.notna() & ~column.map(lambda v: isinstance(v, str))
    if not_text.any():
        fail(
            f"{int(not_text.sum())} value(s) are not text (the note column holds numbers or other values), first at "
            f"data row {first_row(not_text)}",
            spec.note_column,
        )
    texts = column.fillna("").astype(str).tolist()
    ids, lengths = encode(tokenizer, texts, spec.max_length)
    return ids.astype(np.float32), lengths > framing(tokenizer)


def _images(
    cells: pd.DataFrame, spec: MultimodalSpec, table: Path, fail: Callable[..., NoReturn]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (flattened, resized to the study's size and channels) and presence; a path that is not text, leaves
    the table's folder, does not exist or is not a readable image is refused with its row."""
    column = spec.image_column
    folder = table.parent.resolve()
    size = spec.channels * spec.image_size * spec.image_size
    out = np.zeros((len(cells), size), dtype=np.float32)
    present = cells[column].notna().to_numpy() & (cells[column].astype(str).str.strip() != "").to_numpy()
    problems: dict[str, list[int]] = {}
    for i in np.flatnonzero(present):
        row, cell = int(cells.index[i]) + 1, cells[column].iloc[i]
        where = image_problem(cell, folder)
        if where is not None:
            problems.setdefault(where, []).append(row)
            continue
        try:
            image = read_image(folder / str(cell).strip(), spec.window)
        except UnreadableImage as exc:
            fail(f"data row {row}: '{cell}' is not a readable image ({exc})", column)
        out[i] = resize(image, spec.image_size, spec.channels).reshape(-1)
    for problem, rows in problems.items():
        fail(f"{len(rows)} image path(s) {problem}: data row(s) {row_list(rows)}", column)
    return out, present


def image_problem(cell: object, folder: Path) -> str | None:
    """Why an image cell cannot be read inside the site's data folder, or None."""
    if not isinstance(cell, str):
        return "are not text"
    target = (folder / cell.strip()).resolve()  # resolve follows links: a link out of the folder is out too
    if not target.is_relative_to(folder):
        return "point outside the site's data folder (the table's folder)"
    if not target.is_file():
        return "do not exist"
    return None


def _enough(
    present: np.ndarray, train_idx: np.ndarray, spec: MultimodalSpec, report: dict, fail: Callable[..., NoReturn]
) -> np.ndarray:
    """Refuse, or hide from training, a modality present for fewer than `data.min-patients` training patients (no
    count in the message: it is sent to the server, and a small count can point at a patient)."""
    for m in spec.modalities:
        k = MODALITIES.index(m)
        held = int(present[train_idx, k].sum())
        if 0 < held < spec.min_patients:
            if spec.too_few == "refuse":
                fail(
                    f"modality '{m}' is present for fewer training patients than data.min-patients = "
                    f'{spec.min_patients}; too few to train its encoder (data.too-few = "refuse")'
                )
            present = present.copy()
            present[train_idx, k] = False
            report["notes"].append(
                f"modality '{m}' sits out training: present for {held} training patients, under data.min-patients"
            )
    return present
