"""The built-in synthetic patients: three fair, independent hidden findings vote the outcome, each modality shows
exactly two of them (so alone it is right at most 3 times in 4, and any two decide the vote), and a hospital's file
holds none of them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from shared.tasks.multimodal.demo import FINDINGS, LABS, synthetic_patients, write_demo_sites

N = 4000
SHOWN = {"image": ("nodule", "effusion"), "note": ("nodule", "fever"), "record": ("fever", "effusion")}


@pytest.fixture(scope="module")
def patients() -> tuple[pd.DataFrame, np.ndarray]:
    return synthetic_patients(N, seed=3)


@pytest.fixture(scope="module")
def seen(patients) -> pd.DataFrame:
    """Each finding as read off each modality's data by a fixed rule, one column per (modality, finding)."""
    table, images = patients
    pixels = images.astype(float)
    above = pixels[:, :20].reshape(N, -1)  # above any band: a band covers at most the lowest 6 rows
    lesion = pixels[:, :22].reshape(N, -1).max(1) - np.median(above, 1)  # a lesion's centre lies above row 22
    band = np.median(pixels[:, -2:].reshape(N, -1), 1) - np.median(above, 1)
    words = table["note"].str.lower().str.findall(r"[a-z]+")
    return pd.DataFrame(
        {
            ("image", "nodule"): lesion > 85,
            ("image", "effusion"): band > 40,
            ("note", "nodule"): words.map(lambda w: "nodule" in w),
            ("note", "fever"): words.map(lambda w: "fever" in w),
            ("record", "fever"): table["crp"] > 15,
            ("record", "effusion"): table["wbc"] > 11,
        }
    )


def best_accuracy(seen: pd.DataFrame, modalities: tuple[str, ...], outcome: pd.Series) -> float:
    """The Bayes-optimal accuracy of a prediction from what these modalities show: each combination's majority."""
    shown = [seen[c] for c in seen if c[0] in modalities]
    return float(outcome.groupby(shown).agg(lambda s: s.value_counts().max()).sum() / len(outcome))


def test_the_outcome_is_the_majority_of_three_fair_independent_findings(patients):
    table, _ = patients
    findings = table[FINDINGS].astype(int)
    assert ((findings.sum(axis=1) >= 2) == (table["outcome"] == "yes")).all()
    assert np.allclose(findings.mean(), 0.5, atol=0.03)
    for a, b in itertools.combinations(FINDINGS, 2):
        assert abs((table[a] == table[b]).mean() - 0.5) < 0.03, (a, b)


def test_each_modality_shows_its_two_findings(patients, seen):
    table, _ = patients
    for modality, finding in seen:
        agreement = (seen[modality, finding] == table[finding]).mean()
        assert agreement >= (1.0 if modality != "record" else 0.98), (modality, finding, agreement)


def test_one_modality_is_right_three_times_in_four_at_best_and_any_two_decide_the_outcome(patients, seen):
    outcome = patients[0]["outcome"]
    for modality in SHOWN:
        assert abs(best_accuracy(seen, (modality,), outcome) - 0.75) < 0.025, modality
    for pair in itertools.combinations(SHOWN, 2):
        assert best_accuracy(seen, pair, outcome) >= 0.98, pair
    assert best_accuracy(seen, ("image", "note"), outcome) == 1.0  # neither is measured with noise


def test_a_hospitals_file_holds_the_modalities_and_outcome_but_no_hidden_finding(tmp_path):
    (path,) = write_demo_sites(tmp_path, 1, n_patients=400, missing=0.3)
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == [*LABS, "image", "note", "outcome"]
    for column in ("image", "note"):
        assert 0.2 < (table[column] == "").mean() < 0.4, column
    assert all((tmp_path / "hospital-1" / name).is_file() for name in table["image"] if name)
