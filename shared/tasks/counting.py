"""How many examples a site's data file or folder holds, counted without decoding one: a table's rows, a notes
file's notes, an image set's images (what `policy.max-training-mib` weighs before a study's loader runs)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from shared.tasks.imaging.data import TARGETS, new_image_files
from shared.tasks.tabular.table import PARQUET

JSON_LINES = (".jsonl", ".json")  # the notes formats read one record per line


def count_examples(path: Path, new: bool = False) -> int:
    """Rows of a CSV/TSV or Parquet table, lines of a JSON-lines file, images of a .npz (its `*images` arrays) or of
    a folder: the rows of its labels.csv or masks.csv, or for `new` images (prediction, which reads them all) its
    files but a .csv. 0 when the file cannot be read: its loader then names the problem."""
    try:
        if path.is_dir():
            index = next((path / name for name in TARGETS.values() if (path / name).is_file()), None)
            if index is None or new:
                return len(new_image_files(path))
            return _csv_records(index)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return _npz_images(path)
        if suffix in PARQUET:
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if suffix in JSON_LINES:
            with path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        return _csv_records(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return 0


def _csv_records(path: Path) -> int:
    """Records after the header, blank lines skipped; a quoted field may span lines (a line ends a record when the
    quotes so far pair up), as pandas reads it."""
    records, quotes = 0, 0
    with path.open("rb") as fh:
        for line in fh:
            quotes += line.count(b'"')
            records += quotes % 2 == 0 and bool(line.strip())
    return max(records - 1, 0)


def _npz_images(path: Path) -> int:
    """First dimension of every `images` / `*_images` array, from the arrays' headers only."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.removesuffix(".npy").endswith("images"):
                continue
            with archive.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read(fh)[0]
            total += int(shape[0]) if shape else 0
    return total
