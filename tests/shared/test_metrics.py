"""Classification metrics against hand-computed values; the decision threshold a site picks on its validation split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shared.metrics import choose_threshold, classification_metrics, headline_metrics


def test_binary_metrics_match_hand_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p1 = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.6, 0.4, 0.7])
    m = classification_metrics(y, np.stack([1 - p1, p1], axis=1))
    # predictions: 1 1 0 0 0 1 0 1 -> TP=3 FN=1 TN=3 FP=1
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["balanced-accuracy"] == pytest.approx(0.75)
    assert m["roc-auc"] == pytest.approx(14 / 16)  # 14 of 16 positive/negative pairs ordered


def test_auc_left_out_when_one_class_present():
    y = np.zeros(4, dtype=int)
    m = classification_metrics(y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    assert "roc-auc" not in m and "sensitivity" not in m
    assert m["specificity"] == pytest.approx(0.75)


def test_multiclass_uses_macro_averages():
    y = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["sensitivity"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert 0 < m["roc-auc"] <= 1


@pytest.mark.parametrize("n_classes", [2, 3])
def test_headline_metrics_are_classification_metrics_own(n_classes):
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 40)
    probs = np.round(rng.random((40, n_classes)), 1) + 0.01  # ties, as a small held-out split has
    probs /= probs.sum(1, keepdims=True)
    full, fast = classification_metrics(y, probs), headline_metrics(y, probs)
    assert fast == pytest.approx({k: full[k] for k in ("accuracy", "roc-auc")}, abs=1e-12)
    sklearn_auc = roc_auc_score(y, probs[:, 1]) if n_classes == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert full["roc-auc"] == pytest.approx(sklearn_auc, abs=1e-12)  # scikit-learn's own definition, ties and all
    assert "roc-auc" not in headline_metrics(np.zeros(5, dtype=int), probs[:5])  # one class: undefined, left out
    if n_classes == 2:  # a site's chosen threshold decides its bootstrap's accuracy as it does its metrics
        full, fast = classification_metrics(y, probs, threshold=0.3), headline_metrics(y, probs, threshold=0.3)
        assert fast["accuracy"] == pytest.approx(full["accuracy"], abs=1e-12)
        assert fast["accuracy"] != headline_metrics(y, probs)["accuracy"]


def test_the_threshold_maximises_youdens_j_on_the_split_it_is_given():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    p1 = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.35, 0.32, 0.4])  # all under 0.5: argmax says "0" for everyone
    threshold = choose_threshold(y, p1, "youden")
    # J is best (1 - 1/6) cutting just under 0.32, midway to the next lower score 0.3.
    assert threshold == pytest.approx(0.31)
    fixed, chosen = (classification_metrics(y, np.stack([1 - p1, p1], axis=1), threshold=t) for t in (None, threshold))
    assert fixed["predicted-classes"] == 1 and fixed["balanced-accuracy"] == pytest.approx(0.5)
    assert chosen["predicted-classes"] == 2 and chosen["sensitivity"] == 1.0
    assert chosen["specificity"] == pytest.approx(5 / 6) and chosen["roc-auc"] == fixed["roc-auc"]


def test_the_accuracy_threshold_trades_a_rare_case_for_the_majoritys_accuracy():
    # 2 positives in 12; one positive scores below three negatives.
    y = np.array([0] * 10 + [1, 1])
    p1 = np.array([0.05, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.6, 0.62, 0.64, 0.55, 0.9])
    youden, accuracy = choose_threshold(y, p1, "youden"), choose_threshold(y, p1)
    assert youden == pytest.approx(0.425)  # both positives found: J = 1 - 3/10
    assert accuracy == pytest.approx(0.77)  # only the 0.9 called positive: 11 of 12 right
    probs = np.stack([1 - p1, p1], axis=1)
    by_youden, by_accuracy = (classification_metrics(y, probs, threshold=t) for t in (youden, accuracy))
    assert by_accuracy["accuracy"] == pytest.approx(11 / 12)
    assert by_youden["accuracy"] == pytest.approx(9 / 12)
    assert by_youden["balanced-accuracy"] > by_accuracy["balanced-accuracy"]
    assert choose_threshold(y, p1, "none") is None


def test_no_threshold_without_both_classes_or_without_signal():
    for criterion in ("accuracy", "youden"):
        assert choose_threshold(np.zeros(5, dtype=int), np.linspace(0, 1, 5), criterion) is None
        no_signal = choose_threshold(np.array([1, 0, 1, 0]), np.array([0.1, 0.2, 0.3, 0.4]), criterion)
        assert no_signal is None  # no cut beats chance
    # Calling everyone positive (3 of 4 right) is the best any cut does here: no cut beats the majority class.
    assert choose_threshold(np.array([1, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])) is None
