"""A small U-Net with GroupNorm (DP-trainable: nearest upsampling instead of transposed convolutions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.tasks.imaging.model import conv_block
from shared.tasks.imaging.spec import ImagingModelSpec

DEPTH = 3  # poolings: a 28-pixel image reaches 3x3 at the bottleneck


class UNet(nn.Module):
    """Encoder-decoder with skip connections; any image size (decoder maps are matched to their skips)."""

    def __init__(self, channels: int, n_classes: int, width: int) -> None:
        super().__init__()
        sizes = [width * 2**i for i in range(DEPTH + 1)]
        self.down = nn.ModuleList(
            nn.Sequential(*conv_block(c_in, c_out), *conv_block(c_out, c_out))
            for c_in, c_out in zip([channels, *sizes[:-2]], sizes[:-1], strict=True)
        )
        self.bottom = nn.Sequential(*conv_block(sizes[-2], sizes[-1]), *conv_block(sizes[-1], sizes[-1]))
        self.up = nn.ModuleList(
            nn.Sequential(*conv_block(c_below + c_skip, c_skip), *conv_block(c_skip, c_skip))
            for c_below, c_skip in zip(sizes[:0:-1], sizes[-2::-1], strict=True)
        )
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> per-pixel class logits (N, classes, H, W)."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def build_unet(channels: int, n_classes: int, spec: ImagingModelSpec) -> nn.Module:
    """The study's U-Net."""
    return UNet(channels, n_classes, spec.width)


SEGMENTERS = {"unet": build_unet}
