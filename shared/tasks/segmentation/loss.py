"""Segmentation loss: per-pixel cross-entropy plus soft Dice, computed per image so DP-SGD can clip per image."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

SMOOTH = 1.0  # keeps Dice defined (and its gradient tame) on images with no foreground


class DiceCrossEntropyLoss(nn.Module):
    """Mean pixel cross-entropy + (1 - soft Dice over the foreground classes), one value per image, then reduced.

    Cross-entropy alone is dominated by background pixels on small lesions; the Dice term weighs the lesion.
    `reduction` follows torch's losses ("mean", "sum", "none"), which Opacus's ghost clipping relies on.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) class indices."""
        ce = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
        probs = logits.softmax(1)[:, 1:].flatten(2)
        truth = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].flatten(2).to(probs.dtype)
        dice = (2 * (probs * truth).sum(2) + SMOOTH) / (probs.sum(2) + truth.sum(2) + SMOOTH)
        per_image = ce + 1 - dice.mean(1)
        if self.reduction == "none":
            return per_image
        return per_image.sum() if self.reduction == "sum" else per_image.mean()
