"""Read, validate, split and pack one site's patients (and, for prediction, new ones): the record as a table, images
from files inside the site's data folder, notes tokenized, omics values (table columns or a matrix file) standardised;
each modality's presence per patient."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.errors import ConfigError
from shared.tasks.base import NewInputs, SiteData
from shared.tasks.imaging.files import OUTSIDE, UnreadableImage, inside, read_image, resize
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.omics import OmicsSource, encode_omics, fit_omics
from shared.tasks.multimodal.spec import MODALITIES, MultimodalSpec
from shared.tasks.tabular.data import (
    FeatureEncoding,
    encode_features,
    encode_new_frame,
    failer,
    first_row,
    split_rows,
    usable_rows,
)
from shared.tasks.tabular.table import read_table, row_ids, row_list
from shared.tasks.text.tokenizer import Tokenizer, encode, framing


def load_multimodal_site(path: Path, site: str, spec: MultimodalSpec, tokenizer: Tokenizer, seed: int) -> SiteData:
    """The site's packed train/test rows (Layout) and labels, a local report with each modality's coverage, and the
    statistics its record and omics values were standardised with (kept for prediction); every problem names site,
    file, column and the first row at fault."""
    read = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal)
    frame, fail = read.frame, failer(site, str(path))
    omics = OmicsSource.of(spec).values(frame, path, site) if spec.omics else None
    held = site_modalities(frame, spec, omics is not None, fail)
    table, y, report = usable_rows(frame, str(path), spec, fail)
    report["notes"] = read.notes + report["notes"]
    train_idx, test_idx, fit, val = split_rows(table, y, spec, seed, site, str(path), report, spec.validation_fraction)
    kept: dict[str, Any] = {}
    record = None
    if spec.features:
        x_train, x_test, encoding = encode_features(table.iloc[train_idx], table.iloc[test_idx], spec)
        record = np.zeros((len(table), spec.n_inputs), dtype=np.float32)
        record[train_idx], record[test_idx] = x_train, x_test
        kept["record"] = encoding.to_dict()
    packed_omics = None
    if omics is not None:
        values = omics.loc[table.index]
        omics_encoding = fit_omics(values, train_idx, spec)
        if omics_encoding is not None:
            kept["omics"] = omics_encoding.to_dict()
        packed_omics = encode_omics(values, spec, omics_encoding)
    rows, present = _pack(frame.loc[table.index], held, spec, tokenizer, path, fail, record, packed_omics)
    present = _enough(present, train_idx, spec, report, fail)
    rows[:, Layout.of(spec).parts["mask"]] = present
    report["coverage"] = {m: round(float(present[:, MODALITIES.index(m)].mean()), 4) for m in spec.modalities}
    x, labels = torch.from_numpy(rows), torch.from_numpy(y)
    fitted, validation = train_idx[fit], train_idx[val]  # the validation rows place a binary model's threshold
    return SiteData(
        train=TensorDataset(x[fitted], labels[fitted]),
        test=TensorDataset(x[test_idx], labels[test_idx]),
        report=report,
        kept=kept,
        val=TensorDataset(x[validation], labels[validation]) if len(validation) else None,
    )


def new_patients(
    path: Path, site: str, spec: MultimodalSpec, tokenizer: Tokenizer, kept: dict[str, Any], id_column: str | None
) -> NewInputs:
    """New patients' packed rows for prediction, read, checked and prepared as training's were (the statistics the
    site kept from its train split, the study's tokenizer, images and omics from the table's folder); a patient
    lacking a modality has it masked out. A row training would drop gets no input; an id per row from `id_column`,
    else the data row number."""
    read = read_table(path, site, spec.na_values, spec.delimiter, spec.decimal)
    frame, fail = read.frame, failer(site, str(path))
    ids = row_ids(frame, id_column, site, str(path))
    omics = OmicsSource.of(spec).values(frame, path, site) if spec.omics else None
    held = site_modalities(frame, spec, omics is not None, fail)
    record, usable = None, np.ones(len(frame), dtype=bool)
    if spec.features:
        record, usable = encode_new_frame(frame, site, str(path), spec, _kept(kept, "record", site))
    packed_omics = None
    if omics is not None:
        encoding = FeatureEncoding.from_dict(kept["omics"]) if "omics" in kept else None  # none: no train patient had
        packed_omics = encode_omics(omics[usable], spec, encoding)
    rows, present = _pack(frame[usable], held, spec, tokenizer, path, fail, record, packed_omics)
    rows[:, Layout.of(spec).parts["mask"]] = present
    return NewInputs(ids, torch.from_numpy(rows), usable)


def _kept(kept: dict[str, Any], part: str, site: str) -> dict[str, Any]:
    """The statistics the site kept for one part of a row; a site that never trained in the study has none."""
    if part not in kept:
        raise ConfigError(
            "study",
            f"has no {part} statistics kept at site '{site}' (it took part without training): prediction "
            "standardises rows with the statistics a site kept from its own train split",
            source="predict",
        )
    return kept[part]


def _pack(
    cells: pd.DataFrame,
    held: list[str],
    spec: MultimodalSpec,
    tokenizer: Tokenizer,
    table: Path,
    fail: Callable[..., NoReturn],
    record: np.ndarray | None,
    omics: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's packed row (its presence mask left to the caller) and which modalities it has: the encoded
    `record` and `omics` given, the note tokenized and the image read here."""
    layout = Layout.of(spec)
    parts = layout.parts
    rows = np.zeros((len(cells), layout.width), dtype=np.float32)
    present = np.zeros((len(cells), len(MODALITIES)), dtype=bool)
    if record is not None:
        rows[:, parts["record"]], present[:, MODALITIES.index("record")] = record, True
    if omics is not None:
        rows[:, parts["omics"]], present[:, MODALITIES.index("omics")] = omics
    if "note" in held:
        rows[:, parts["note"]], present[:, MODALITIES.index("note")] = _notes(cells, spec, tokenizer, fail)
    if "image" in held:
        rows[:, parts["image"]], present[:, MODALITIES.index("image")] = _images(cells, spec, table, fail)
    return rows, present


def site_modalities(
    frame: pd.DataFrame, spec: MultimodalSpec, has_omics: bool, fail: Callable[..., NoReturn]
) -> list[str]:
    """The study's modalities this site holds: record, image and note columns in its table, omics there or in its
    omics file; a required one it lacks is refused."""
    held = ["record"] if spec.features else []
    for modality, column in (("image", spec.image_column), ("note", spec.note_column)):
        if column and column in frame.columns:
            held.append(modality)
    if has_omics:
        held.append("omics")
    absent = [m for m in spec.required if m not in held]
    if absent:
        column = {"image": spec.image_column, "note": spec.note_column}.get(absent[0])
        fail(f"the study requires modality '{absent[0]}' (data.required) and this table has no column for it", column)
    return held


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
    present = named_images(cells[column])
    for problem, rows in image_problems(cells[column][present], folder).items():
        fail(f"{len(rows)} image path(s) {problem}: data row(s) {row_list(rows)}", column)
    out = np.zeros((len(cells), spec.channels * spec.image_size * spec.image_size), dtype=np.float32)
    for i in np.flatnonzero(present.to_numpy()):
        row, cell = int(cells.index[i]) + 1, cells[column].iloc[i]
        try:
            image = read_image(folder / str(cell).strip(), spec.window)
        except UnreadableImage as exc:
            fail(f"data row {row}: '{cell}' is not a readable image ({exc})", column)
        out[i] = resize(image, spec.image_size, spec.channels).reshape(-1)
    return out, present.to_numpy()


def named_images(column: pd.Series) -> pd.Series:
    """Which cells of an image column name a file (neither missing nor blank)."""
    return column.notna() & (column.astype(str).str.strip() != "")


def image_problems(cells: pd.Series, folder: Path) -> dict[str, list[int]]:
    """The image cells that cannot be read inside the site's data folder `folder`, by problem: their data row
    numbers (1 + index), in order."""
    problems: dict[str, list[int]] = {}
    for index, cell in cells.items():
        problem = image_problem(cell, folder)
        if problem:
            problems.setdefault(problem, []).append(int(index) + 1)
    return problems


def image_problem(cell: object, folder: Path) -> str | None:
    """Why an image cell cannot be read inside the site's data folder, or None."""
    if not isinstance(cell, str):
        return "are not text"
    target = inside(folder, cell)
    if target is None:
        return OUTSIDE
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
