"""Text loader: CSV and JSONL, the local report, and a clear error naming site and file per bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared.errors import DataError
from shared.tasks.text.data import infer_text_options, load_text_site, read_notes, text_options
from shared.tasks.text.spec import TextSpec
from shared.tasks.text.tokenizer import HashingTokenizer

SPEC = TextSpec(classes=["cardio", "neuro"], max_length=8)
NOTES = [("chest pain and palpitations", "cardio"), ("seizure then headache", "neuro")] * 10


def csv(tmp_path, rows=NOTES, header="text,label"):
    path = tmp_path / "notes.csv"
    path.write_text("\n".join([header, *(f'"{t}",{y}' for t, y in rows)]) + "\n", encoding="utf-8")
    return path


def load(path, spec=SPEC):
    return load_text_site(path, "hospital-x", spec, HashingTokenizer(1024), seed=0)


def test_csv_and_jsonl_give_the_same_notes(tmp_path):
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in NOTES), encoding="utf-8")
    a, b = load(csv(tmp_path)), load(jsonl)
    assert a.report["notes"] == b.report["notes"] == 20 and len(a.train) == 16 and len(a.test) == 4
    ids, label = a.train[0]
    assert ids.shape == (8,) and label.dtype.is_floating_point is False


def test_report_counts_truncation_and_dropped_empty_notes(tmp_path):
    rows = [*NOTES, ("   ", "cardio"), ("", "neuro"), ("one two three four five six seven eight nine", "neuro")]
    report = load(csv(tmp_path, rows)).report
    assert report["empty-dropped"] == 2 and report["truncated"] == 1 and report["notes"] == 21
    assert report["class-counts"] == {"cardio": 10, "neuro": 11}
    assert not any(t in json.dumps(report) for t, _ in rows if t.strip())  # counts only, never a note


def expect(path, match, spec=SPEC):
    with pytest.raises(DataError) as err:
        load(path, spec)
    assert "hospital-x" in str(err.value) and match in str(err.value)
    return str(err.value)


def test_empty_notes_fatal_when_the_study_says_so(tmp_path):
    expect(
        csv(tmp_path, [*NOTES, (" ", "neuro")]),
        "1 empty note(s), first at data row 21",
        dataclasses.replace(SPEC, on_empty="fail"),
    )


def test_non_utf8_file(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"text,label\nok,cardio\n" + "café,neuro\n".encode("latin-1"))
    assert "notes.csv" in expect(path, "is not UTF-8 text (byte 24, line 3)")


def test_missing_label_column(tmp_path):
    assert "column 'label'" in expect(csv(tmp_path, header="text,diagnosis"), "column not found")


def test_unknown_label(tmp_path):
    expect(csv(tmp_path, [*NOTES, ("fever", "oncology")]), "1 label(s) outside the study's classes")


def test_unsupported_format_and_missing_file(tmp_path):
    expect(tmp_path / "notes.txt", "unsupported format '.txt'")
    expect(tmp_path / "none.csv", "file not found")


def test_a_site_below_the_minimum_size_is_refused_by_name(tmp_path):
    path = csv(tmp_path, NOTES[:19])
    with pytest.raises(DataError) as err:
        load(path)
    assert (
        str(err.value)
        == f"site 'hospital-x', file '{path}': fewer usable rows than data.min-rows = 20; too few to train on"
    )
    one_neuro = csv(tmp_path, [n for n in NOTES if n[1] == "cardio"] + [NOTES[1]])
    with pytest.raises(
        DataError, match=r"class\(es\) \['neuro'\] have fewer training rows than data.min-per-class = 2"
    ):
        load(one_neuro, dataclasses.replace(SPEC, min_rows=10))


@pytest.mark.parametrize(
    ("header", "hints", "exclude", "text"),
    [
        ("text,label", {}, (), "text"),
        ("abstract,condition", {"label-column": "condition"}, (), "abstract"),  # the one column besides the label
        ("hospital,abstract,condition", {"label-column": "condition"}, ("hospital",), "abstract"),  # and the site's
        ("abstract,summary,condition", {"label-column": "condition", "text-column": "summary"}, (), "summary"),
    ],
)
def test_the_notes_column_is_text_else_the_one_other_column_else_the_one_named(tmp_path, header, hints, exclude, text):
    columns = header.split(",")
    path = tmp_path / "notes.csv"
    path.write_text(header + "\n" + "\n".join(",".join([f"{c}-{i % 2}" for c in columns]) for i in range(4)) + "\n")
    options = text_options(read_notes(path, "simulation"), "simulation", str(path), hints, exclude)
    assert options["text-column"] == text and options["label-column"] == columns[-1]


def test_two_candidate_notes_columns_and_none_named_text_is_refused_naming_the_setting(tmp_path):
    path = csv(tmp_path, header="abstract,summary,label")
    with pytest.raises(DataError) as err:
        infer_text_options(path, "simulation", {})
    assert str(err.value) == (
        f"site 'simulation', file '{path}', column 'text': column not found (has: abstract, summary, label); name "
        "the notes' column: data.text-column (medfed-sim --text-column)"
    )


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes("text,label\nchest pain,cardio\n".encode("utf-8-sig"))
    assert list(read_notes(path, "north").columns) == ["text", "label"]
