"""Imaging models, GroupNorm instead of BatchNorm so Opacus can train them."""

from __future__ import annotations

from torch import nn

from shared.tasks.imaging.spec import ImagingModelSpec


def build_cnn(channels: int, n_classes: int, spec: ImagingModelSpec) -> nn.Module:
    """A compact CNN: three conv blocks (conv, GroupNorm, ReLU, pool), global average pooling, a linear head."""
    w = spec.width
    blocks: list[nn.Module] = []
    for c_in, c_out in ((channels, w), (w, 2 * w), (2 * w, 4 * w)):
        blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(4, c_out), c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes))
