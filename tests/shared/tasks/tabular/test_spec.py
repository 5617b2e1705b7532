"""Label inference: each value's rows, and a value far rarer than the others flagged rather than made a class."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.tasks.tabular.spec import label_counts, rare_label_values


def test_label_counts_are_per_canonical_value_sorted_without_missing():
    assert label_counts(pd.Series([1.0, 0.0, 1.0, None, "1"])) == {"0": 1, "1": 3}


@pytest.mark.parametrize(
    ("counts", "rare"),
    [
        ({"no": 250, "unknown": 5, "yes": 300}, ["unknown"]),
        ({"no": 250, "unknown": 20, "yes": 300}, []),  # a small third class, not a stray code
        ({"no": 500, "yes": 5}, []),  # a binary label is imbalanced, never "rare"
        ({"a": 100, "b": 90, "c": 3, "d": 2}, ["c", "d"]),
    ],
)
def test_a_value_far_rarer_than_the_others_is_flagged(counts, rare):
    assert rare_label_values(counts) == rare
