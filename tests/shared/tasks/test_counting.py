"""A site's examples are counted from its files without decoding them, as its loaders will read them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.tasks.counting import count_examples


def test_a_csv_counts_records_not_lines(tmp_path):
    table = tmp_path / "notes.csv"
    table.write_text('id,text\n1,"a note\nover three\nlines"\n\n2,"say ""hi"""\n3,plain\n')
    assert count_examples(table) == len(pd.read_csv(table)) == 3


def test_a_semicolon_table_parquet_and_json_lines(tmp_path):
    frame = pd.DataFrame({"age": np.arange(7), "label": ["a", "b"] * 3 + ["a"]})
    frame.to_csv(tmp_path / "t.csv", sep=";", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    assert [count_examples(tmp_path / f"t.{s}") for s in ("csv", "parquet", "jsonl")] == [7, 7, 7]


def test_an_npz_is_counted_from_its_headers_without_reading_its_images(tmp_path, monkeypatch):
    path = tmp_path / "site.npz"
    np.savez(
        path,
        train_images=np.zeros((5, 4, 4)),
        train_labels=np.zeros(5),
        val_images=np.zeros((2, 4, 4)),
        test_images=np.zeros((3, 4, 4, 3)),
        test_labels=np.zeros(3),
    )
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("an array was read"))
    assert count_examples(path) == 10


def test_an_image_folder_counts_its_index_or_else_its_files(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"")
    assert count_examples(tmp_path) == 3
    (tmp_path / "labels.csv").write_text("file,label\na.png,x\nb.png,y\n")
    assert count_examples(tmp_path) == 2  # training reads what the index lists
    assert count_examples(tmp_path, new=True) == 3  # prediction reads every image file


@pytest.mark.parametrize("name", ["missing.csv", "broken.npz"])
def test_what_cannot_be_read_counts_nothing_and_is_left_to_its_loader(tmp_path, name):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert count_examples(tmp_path / name) == 0
