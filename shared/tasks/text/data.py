"""Read, validate, tokenize and split one site's notes (CSV or JSONL, a text and a label column)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.errors import DataError
from shared.partition import split_indices
from shared.tasks.base import NewInputs, SiteData
from shared.tasks.labels import label_indices
from shared.tasks.size import check_site_size, validation_split
from shared.tasks.tabular.table import read_utf8, row_ids
from shared.tasks.text.spec import TextSpec
from shared.tasks.text.tokenizer import Tokenizer, encode, framing

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def load_text_site(path: Path, site: str, spec: TextSpec, tokenizer: Tokenizer, seed: int) -> SiteData:
    """The site's tokenized train/test notes plus a local report (counts only, never a note)."""
    return text_site_data(read_notes(path, site), site, str(path), spec, tokenizer, seed)


def text_site_data(
    table: pd.DataFrame, site: str, file: str, spec: TextSpec, tokenizer: Tokenizer, seed: int
) -> SiteData:
    """Validate, tokenize and split one site's notes. Row numbers in messages are 1 + the frame's index, so a site's
    notes cut from a larger file (a simulation's) are named by their row in that file."""
    for column in (spec.text_column, spec.label_column):
        if column not in table.columns:
            raise DataError(site, f"column not found (has: {', '.join(map(str, table.columns))})", file, column)
    texts = table[spec.text_column].fillna("").astype(str).tolist()
    ids, lengths = encode(tokenizer, texts, spec.max_length)
    empty = np.array([not t.strip() for t in texts]) | (lengths <= framing(tokenizer))
    if empty.any() and spec.on_empty == "fail":
        first = int(table.index[np.argmax(empty)]) + 1
        raise DataError(site, f"{int(empty.sum())} empty note(s), first at data row {first}", file)
    keep = ~empty
    if not keep.any():
        raise DataError(site, "holds no non-empty note", file, spec.text_column)
    labels = label_indices(table[spec.label_column].to_numpy()[keep], spec.class_names, site, file)
    ids, lengths = ids[keep], lengths[keep]
    split_seed = spec.split_seed if spec.split_seed >= 0 else seed
    train_idx, test_idx = split_indices(labels, spec.test_fraction, split_seed)
    check_site_size(site, file, len(labels), labels[train_idx], spec.class_names, spec)
    fit, val = validation_split(labels[train_idx], len(spec.class_names), spec.validation_fraction, split_seed)
    train_idx, val_idx = train_idx[fit], train_idx[val]
    report = {
        "file": file,
        "notes": int(keep.sum()),
        "empty-dropped": int(empty.sum()),
        "truncated": int((lengths > spec.max_length).sum()),
        "median-tokens": float(np.median(lengths)),
        "class-counts": {c: int((labels == i).sum()) for i, c in enumerate(spec.class_names)},
        "train-notes": len(train_idx),
        "validation-notes": len(val_idx),
        "test-notes": len(test_idx),
    }
    tensors = torch.from_numpy(ids), torch.from_numpy(labels)
    return SiteData(
        train=TensorDataset(*(t[train_idx] for t in tensors)),
        test=TensorDataset(*(t[test_idx] for t in tensors)),
        report=report,
        val=TensorDataset(*(t[val_idx] for t in tensors)) if len(val_idx) else None,
    )


def new_notes(path: Path, site: str, spec: TextSpec, tokenizer: Tokenizer, id_column: str | None) -> NewInputs:
    """New notes for prediction, read and tokenized as training notes are; an empty note is refused by row with
    `data.on-empty = "fail"`, else gets no prediction, as training drops it. An id per note from `id_column`, else
    the data row number."""
    table = read_notes(path, site)
    if spec.text_column not in table.columns:
        raise DataError(
            site, f"column not found (has: {', '.join(map(str, table.columns))})", str(path), spec.text_column
        )
    ids = row_ids(table, id_column, site, str(path))
    texts = table[spec.text_column].fillna("").astype(str).tolist()
    empty = np.array([not t.strip() for t in texts], dtype=bool)
    if empty.any() and spec.on_empty == "fail":
        raise DataError(
            site, f"{int(empty.sum())} empty note(s), first at data row {int(np.argmax(empty)) + 1}", str(path)
        )
    tokens = encode(tokenizer, [t for t, e in zip(texts, empty, strict=True) if not e], spec.max_length)[0]
    return NewInputs(ids, torch.from_numpy(tokens), ~empty)


def read_notes(path: Path, site: str) -> pd.DataFrame:
    """The notes table as strings; a missing file, an unknown format or non-UTF-8 bytes name the file."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(site, f"unsupported format '{path.suffix}' (use {', '.join(FORMATS)})", str(path))
    if not path.is_file():
        raise DataError(site, "file not found", str(path))
    text = read_utf8(path, site)
    try:
        if kind == "csv":
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(site, f"cannot be read as {kind} ({str(exc).splitlines()[0][:120]})", str(path)) from exc


def infer_text_options(path: Path, site: str, hints: dict) -> dict:
    """The label column's classes of a notes file and its text column (see `text_options`)."""
    return text_options(read_notes(path, site), site, str(path), hints)


def text_options(table: pd.DataFrame, site: str, file: str, hints: dict, exclude: tuple[str, ...] = ()) -> dict:
    """The label column's classes of a notes table and its text column: `text`, else the one column that is neither
    the label nor in `exclude` (a simulation's site column); `hints` win (and name the columns if not the defaults)."""
    has = f"has: {', '.join(map(str, table.columns))}"
    label = hints.get("label-column", "label")
    if label not in table.columns:
        raise DataError(site, f"column not found ({has})", file, label)
    others = [c for c in table.columns if c != label and c not in exclude]
    text = hints.get("text-column") or ("text" if "text" in table.columns or len(others) != 1 else others[0])
    if text not in table.columns:
        problem = f"column not found ({has}); name the notes' column: data.text-column (medfed-sim --text-column)"
        raise DataError(site, problem, file, text)
    return {
        "label-column": label,
        "text-column": text,
        "classes": sorted({str(v).strip() for v in table[label]}),
        **hints,
    }
