"""How one patient's modalities travel through the loaders as a single float row: record | omics | note tokens |
image pixels | presence mask. One tensor per patient is what every task's loaders, `predict` and Opacus's
Poisson-sampling loader take; the model cuts the row back into its parts."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shared.tasks.multimodal.spec import MODALITIES, MultimodalSpec


@dataclass(frozen=True)
class Layout:
    """Widths of each part of a patient's row, fixed by the study (the same at every site)."""

    record: int
    omics: int
    tokens: int
    image: tuple[int, int, int]  # (channels, size, size); (0, 0, 0) when the study has no image column

    @classmethod
    def of(cls, spec: MultimodalSpec) -> Layout:
        """The layout of a study's `[data]`."""
        image = (spec.channels, spec.image_size, spec.image_size) if spec.image_column else (0, 0, 0)
        return cls(spec.n_inputs, len(spec.omics), spec.max_length if spec.note_column else 0, image)

    @property
    def parts(self) -> dict[str, slice]:
        """Each part's columns in the row, the presence mask (one column per modality, in MODALITIES order) last."""
        widths = {
            "record": self.record,
            "omics": self.omics,
            "note": self.tokens,
            "image": self.image[0] * self.image[1] * self.image[2],
            "mask": len(MODALITIES),
        }
        out, start = {}, 0
        for name, width in widths.items():
            out[name] = slice(start, start + width)
            start += width
        return out

    @property
    def width(self) -> int:
        """Columns of a patient's row."""
        return self.parts["mask"].stop

    def mask(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, modalities) bool: which modalities each patient has."""
        return rows[:, self.parts["mask"]] > 0.5

    def with_mask(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A copy of `rows` whose presence mask is `mask` (an ablation, or a modality sitting out)."""
        out = rows.clone()
        out[:, self.parts["mask"]] = mask.to(rows.dtype)
        return out
