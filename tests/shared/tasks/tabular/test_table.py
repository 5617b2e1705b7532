"""Reading a table as its author meant: sniffed delimiter and decimal, empty unnamed columns, shifted rows."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.errors import DataError
from shared.tasks.tabular.table import read_table

FRAME = pd.DataFrame({"age": [61.5, 47.25, 70.0], "sex": ["F", "M", "F"], "outcome": ["yes", "no", "no"]})


@pytest.mark.parametrize(
    ("delimiter", "decimal", "notes"),
    [
        (",", ".", []),
        (";", ",", ["read as semicolon-separated, decimal separator ','"]),
        (";", ".", ["read as semicolon-separated, decimal separator '.'"]),
        ("\t", ".", ["read as tab-separated, decimal separator '.'"]),
        ("|", ",", ["read as pipe-separated, decimal separator ','"]),
    ],
)
def test_delimiter_and_decimal_are_sniffed(tmp_path, delimiter, decimal, notes):
    path = tmp_path / "export.csv"
    FRAME.to_csv(path, index=False, sep=delimiter, decimal=decimal)
    table = read_table(path, "north", ["?"])
    pd.testing.assert_frame_equal(table.frame, FRAME)
    assert (table.delimiter, table.decimal, table.notes) == (delimiter, decimal, notes)


def test_an_explicit_delimiter_and_decimal_win_over_sniffing(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("age;weight\n1,5;2\n")
    assert read_table(path, "north", ["?"]).frame.to_dict("list") == {"age": [1.5], "weight": [2]}
    assert read_table(path, "north", ["?"], decimal=".").frame.to_dict("list") == {"age": ["1,5"], "weight": [2]}


def test_an_empty_unnamed_column_is_dropped_and_said(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("age,outcome,\n61,yes,\n47,no,\n")
    table = read_table(path, "north", ["?"])
    assert list(table.frame.columns) == ["age", "outcome"]
    assert table.notes == ["dropped 1 empty column(s) with no header name (a trailing delimiter on every line?)"]


@pytest.mark.parametrize(
    ("rows", "shifted", "fix"),
    [
        (["61,F,yes,", "47,M,no,"], 2, "data row(s) 1, 2; remove the trailing comma at the end of those rows"),
        (
            ["61,F,yes", "47,M,no,late"],
            1,
            "data row(s) 2; name the extra column in the header, or quote the values that hold the delimiter",
        ),
    ],
)
def test_a_row_with_more_fields_than_the_header_is_refused_by_number(tmp_path, rows, shifted, fix):
    path = tmp_path / "export.csv"
    path.write_text("\n".join(["age,sex,outcome", *rows]) + "\n")
    with pytest.raises(DataError) as err:
        read_table(path, None, ["?"])
    assert str(err.value) == (
        f"file '{path}': {shifted} data row(s) have more fields than the header's 3, so their values would shift "
        f"columns: {fix}"
    )


def test_a_windows_export_is_refused_with_its_line_and_the_fix_and_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("city,age\nZürich,61\nMünchen,47\n".encode("cp1252"))
    with pytest.raises(DataError) as caught:
        read_table(path, "north", ["?"])
    assert (caught.value.site, caught.value.file) == ("north", str(path))
    assert (
        caught.value.problem == "is not UTF-8 text (byte 10, line 2): re-save it as UTF-8 (a spreadsheet's 'CSV UTF-8')"
    )
    path.write_bytes("city,age\nZürich,61\n".encode("utf-8-sig"))
    assert list(read_table(path, "north", ["?"]).frame.columns) == ["city", "age"]
