"""Imaging networks, GroupNorm instead of BatchNorm so that Opacus can train every one of them."""

from __future__ import annotations

import math

from torch import Tensor, nn

from shared.tasks.imaging.spec import ImagingModelSpec


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide the channel count (per-sample, so DP-SGD can clip it)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 convolution, GroupNorm, ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU()]


def build_cnn(channels: int, n_classes: int, spec: ImagingModelSpec) -> nn.Module:
    """A compact CNN: three conv blocks each halving the size, global average pooling, a linear head."""
    w = spec.width
    blocks: list[nn.Module] = []
    for c_in, c_out in ((channels, w), (w, 2 * w), (2 * w, 4 * w)):
        blocks += [*conv_block(c_in, c_out), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes))


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block, with GroupNorm."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            norm(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            norm(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm(c_out))
        )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Residual sum, then ReLU."""
        return self.relu(self.body(x) + self.skip(x))


def build_resnet18(channels: int, n_classes: int, spec: ImagingModelSpec) -> nn.Module:
    """ResNet-18's layout (four stages of two basic blocks) with a 3x3 stem for small images, as MedMNIST's
    ResNet-18 (28); `width` 64 is the original size (11 M parameters), the default 16 has 0.7 M."""
    w = spec.width
    stages: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(((w, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w))):
        stride = 1 if i == 0 else 2
        stages += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
    return nn.Sequential(
        *conv_block(channels, w), *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, n_classes)
    )


CLASSIFIERS = {"cnn": build_cnn, "resnet18": build_resnet18}
