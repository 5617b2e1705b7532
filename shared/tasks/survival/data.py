"""Read, validate, split and encode one site's survival table: the tabular features plus a time and an event."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from shared.tasks.base import SiteData
from shared.tasks.survival.spec import NOT_EVENTS, SurvivalSpec, event_codes
from shared.tasks.tabular.data import (
    MISSING_DROPPED,
    drop_hint,
    dropped_notes,
    encode_features,
    failer,
    first_row,
    held_out_split,
    load_table_site,
    numeric_column,
    select_features,
)


def load_survival_site(path: Path, site: str, spec: SurvivalSpec, seed: int) -> SiteData:
    """Train/test tensors (features; outcome rows of [time, event]) split stratified on the event, plus a local
    report; every problem names site, file, column and the first row at fault."""
    return load_table_site(path, site, spec, seed, survival_site_data)


def survival_site_data(table: pd.DataFrame, site: str, file: str, spec: SurvivalSpec, seed: int) -> SiteData:
    """Validate, clean, split and encode one site's rows. Row numbers in messages are 1 + the frame's index, so a
    site's rows cut from a larger file (a simulation's) are named by their row in that file."""
    fail = failer(site, file)
    table, report = select_features(table, file, spec, [spec.time, spec.event], fail)
    time = _times(table[spec.time], fail, spec.time)
    event = _events(table[spec.event], fail, spec.event)
    dropped = 0
    if spec.missing == "drop":
        keep = table[spec.features].notna().all(axis=1).to_numpy()
        table, time, event, dropped = table[keep], time[keep], event[keep], int((~keep).sum())
    report["rows-used"] = len(table)
    report["rows-dropped"] = {MISSING_DROPPED: dropped} if dropped else {}
    report["notes"] = dropped_notes(report, [spec.time, spec.event])
    if len(table) < spec.min_rows:
        fail(f"fewer usable rows than data.min-rows = {spec.min_rows}; too few to train on" + drop_hint(report))
    train_idx, test_idx = held_out_split(table, event, spec, seed, fail)
    sits_out = ""
    if event[train_idx].sum() < spec.min_per_class:
        # No count: the refusal is sent to the server, and a count of one or two events can point at a patient.
        why = (
            f"fewer events in its train split than data.min-per-class = {spec.min_per_class}; a site without events "
            "has an empty partial likelihood and nothing to learn from"
        )
        if spec.too_few == "refuse":
            fail(why + drop_hint(report), spec.event)
        sits_out = f'sits training out (data.too-few = "sit-out"): {why}; it still evaluates'
        report["notes"].append(sits_out)
    x_train, x_test, encoding = encode_features(table.iloc[train_idx], table.iloc[test_idx], spec)
    outcome = np.stack([time, event.astype(float)], axis=1).astype(np.float32)
    report.update(
        {
            "events": int(event.sum()),
            "censored": int(len(event) - event.sum()),
            "train-rows": len(train_idx),
            "test-rows": len(test_idx),
        }
    )
    test_events = int(event[test_idx].sum())
    if test_events < spec.min_test_events:  # the same test as its metrics' (shared/tasks/survival/metrics.py)
        report["held-out-caveat"] = f"held-out split of {test_events} event(s) (under data.min-test-events = " + (
            f"{spec.min_test_events}), so its C-index is not computed"
        )
        report["notes"].append(f"{report['held-out-caveat']}: its metrics are unreliable")
    return SiteData(
        train=TensorDataset(torch.from_numpy(x_train), torch.from_numpy(outcome[train_idx])),
        test=TensorDataset(torch.from_numpy(x_test), torch.from_numpy(outcome[test_idx])),
        report=report,
        kept=encoding.to_dict(),
        sits_out=sits_out,
    )


def _times(values: pd.Series, fail: Callable[..., NoReturn], column: str) -> np.ndarray:
    times = numeric_column(values, fail, column)
    for bad, what in ((times.isna(), "missing"), (times < 0, "negative")):
        if bad.any():
            fail(f"{int(bad.sum())} {what} time(s), first at data row {first_row(bad)}", column)
    return times.to_numpy(float)


def _events(values: pd.Series, fail: Callable[..., NoReturn], column: str) -> np.ndarray:
    codes = event_codes(values)
    bad = codes.isna()
    if bad.any():
        fail(f"{int(bad.sum())} {NOT_EVENTS}, first at data row {first_row(bad)}", column)
    return codes.to_numpy(dtype=np.int64)
