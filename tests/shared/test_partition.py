"""Partitioners: disjoint, complete, deterministic, and skewed the way they claim."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.partition import partition

LABELS = np.array([0] * 300 + [1] * 300)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity"])
def test_parts_are_disjoint_complete_and_deterministic(scheme):
    parts = partition(LABELS, 4, scheme, seed=7, alpha=0.5)
    joined = np.concatenate(parts)
    assert len(parts) == 4
    assert sorted(joined.tolist()) == list(range(len(LABELS)))
    again = partition(LABELS, 4, scheme, seed=7, alpha=0.5)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))
    assert all(len(p) >= 10 for p in parts)


def test_dirichlet_skews_labels_more_than_iid():
    def spread(parts):
        return np.std([LABELS[p].mean() for p in parts])

    assert spread(partition(LABELS, 5, "dirichlet", seed=1, alpha=0.3)) > 3 * spread(
        partition(LABELS, 5, "iid", seed=1)
    )
    for p in partition(LABELS, 5, "dirichlet", seed=1, alpha=0.3):
        assert len(np.unique(LABELS[p])) == 2  # every site can train and be evaluated


def test_quantity_skew_gives_unequal_sizes():
    sizes = [len(p) for p in partition(LABELS, 4, "quantity", seed=3, alpha=0.5)]
    assert max(sizes) > 2 * min(sizes)


def test_bad_requests_are_clear():
    with pytest.raises(ConfigError, match="scheme"):
        partition(LABELS, 3, "random", seed=0)
    with pytest.raises(ConfigError, match="rows"):
        partition(LABELS[:20], 3, "iid", seed=0)
