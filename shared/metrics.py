"""Classification metrics with scikit-learn; undefined values (one class present) are left out, never NaN."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC AUC, sensitivity, specificity and F1 (class 1 positive if binary)."""
    n_classes = probs.shape[1]
    labels = list(range(n_classes))
    y_pred = probs.argmax(axis=1)
    present = np.unique(y_true)
    out = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
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
    out["balanced-accuracy"] = float(np.mean(recall[present]))
    if not np.isnan(sens):
        out["sensitivity"] = float(sens)
    if not np.isnan(specificity):
        out["specificity"] = float(specificity)
    if len(present) == n_classes:
        if n_classes == 2:
            out["roc-auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc-auc"] = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=labels))
    return out
