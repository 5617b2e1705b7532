"""Classification (scikit-learn) and segmentation metrics; undefined values are left out, never NaN."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm


def choose_threshold(y_val: np.ndarray, p_positive: np.ndarray, criterion: str = "accuracy") -> float | None:
    """The decision threshold on a binary classifier's positive-class probability that maximises `criterion` on a
    validation split, accuracy or Youden's J (sensitivity + specificity - 1, i.e. balanced accuracy): midway between
    the chosen score and the next lower one, the maximum nearest 0.5 on ties. None when the criterion is "none", the
    split lacks a class, or no threshold beats chance (Youden's J > 0; accuracy above the majority share)."""
    if criterion == "none" or len(np.unique(y_val)) < 2:
        return None
    fpr, tpr, cuts = skm.roc_curve(y_val, p_positive, drop_intermediate=False)
    if criterion == "youden":
        gain = tpr - fpr
    else:  # correct predictions beyond those of calling everyone negative
        positives = int(np.sum(y_val == 1))
        gain = tpr * positives - fpr * (len(y_val) - positives)
    if gain.max() <= max(0.0, gain[-1]):  # gain[-1]: calling everyone positive
        return None
    # Never the first cut (+inf, nothing positive, gain 0); the last is the lowest score (everything positive).
    best = np.flatnonzero(np.isclose(gain, gain.max()))
    mids = np.array([(cuts[i] + cuts[i + 1]) / 2 if i + 1 < len(cuts) else cuts[i] for i in best])
    return float(mids[np.argmin(np.abs(mids - 0.5))])


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, class_names: list[str] | None = None, threshold: float | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC AUC, sensitivity, specificity and F1 (class 1 positive if binary), and
    `predicted-classes`, how many classes the model predicts at all.

    A binary prediction is positive when its probability reaches `threshold` (None: the likelier class). With more
    than two classes, sensitivity and specificity are macro means, and each class also gets its own
    `sensitivity-<class>` / `specificity-<class>` (one-vs-rest) when `class_names` are given.
    """
    n_classes = probs.shape[1]
    labels = list(range(n_classes))
    y_pred = predicted_classes(probs, threshold)
    present = np.unique(y_true)
    out = {"accuracy": float(skm.accuracy_score(y_true, y_pred)), "predicted-classes": float(len(np.unique(y_pred)))}
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    if n_classes == 2:
        sens, specificity = recall[1], spec[1]
        out["f1"] = float(skm.f1_score(y_true, y_pred, labels=labels, pos_label=1, zero_division=0))
    else:
        sens, specificity = np.nanmean(recall[present]), np.nanmean(spec)
        out["f1"] = float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        for i, name in enumerate(class_names or []):
            for key, values in (("sensitivity", recall), ("specificity", spec)):
                if not np.isnan(values[i]):
                    out[f"{key}-{name}"] = float(values[i])
    out["balanced-accuracy"] = float(np.mean(recall[present]))
    if not np.isnan(sens):
        out["sensitivity"] = float(sens)
    if not np.isnan(specificity):
        out["specificity"] = float(specificity)
    if len(present) == n_classes:
        out["roc-auc"] = _roc_auc(y_true, probs)
    return out


def predicted_classes(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Each row's predicted class: binary, positive from `threshold` on (None: the likelier); else the likeliest."""
    if probs.shape[1] == 2 and threshold is not None:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def headline_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """Accuracy and ROC AUC alone, as `classification_metrics` defines them, in a fraction of its time: what a site's
    bootstrap recomputes for every replicate."""
    out = {"accuracy": float((predicted_classes(probs, threshold) == y_true).mean())}
    if len(np.unique(y_true)) == probs.shape[1]:
        out["roc-auc"] = _roc_auc(y_true, probs)
    return out


def _roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC when every class is present: binary, class 1's; else the mean of each class's one-vs-rest AUC
    (scikit-learn's `multi_class="ovr"`), each the Mann-Whitney statistic, which is scikit-learn's AUC with ties."""
    if probs.shape[1] == 2:
        return _binary_auc(y_true == 1, probs[:, 1])
    return float(np.mean([_binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    ranks = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def segmentation_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Dice and IoU over all of a site's pixels, per foreground class and their mean; pixel accuracy.

    Class 0 is background. A class absent from both truth and prediction has no Dice and is left out.
    """
    y_pred = probs.argmax(axis=1).reshape(-1)
    y_true = y_true.reshape(-1)
    out = {"pixel-accuracy": float((y_pred == y_true).mean())}
    dice, iou = [], []
    for c in range(1, probs.shape[1]):
        truth, pred = y_true == c, y_pred == c
        overlap, total = float((truth & pred).sum()), float(truth.sum() + pred.sum())
        if total == 0:
            continue
        dice.append(2 * overlap / total)
        iou.append(overlap / (total - overlap))
        if probs.shape[1] > 2:
            out[f"dice-{class_names[c]}"] = dice[-1]
    if dice:
        out["dice"], out["iou"] = float(np.mean(dice)), float(np.mean(iou))
    return out
