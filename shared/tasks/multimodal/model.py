"""The fused model: one encoder per modality (the single-modality tasks' networks, each ending in an embedding), a
presence mask, modality dropout and a late-fusion head (concat, gated or attention); Opacus can train all of it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shared.groups import COVERAGE
from shared.tasks.imaging.model import CLASSIFIERS
from shared.tasks.multimodal.layout import Layout
from shared.tasks.multimodal.spec import MODALITIES, MultimodalModelSpec, MultimodalSpec
from shared.tasks.tabular.model import build_tabular_model
from shared.tasks.text.model import build_text_model
from shared.tasks.text.tokenizer import Tokenizer


class ModalityEncoder(nn.Module):
    """A modality's network and its `coverage` buffer: the share of a site's training patients that trained it this
    round, which a site sets before replying and the server divides each encoder's average by (shared.groups)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer(COVERAGE, torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        """The modality's embedding."""
        return self.net(x)


class MultimodalNet(nn.Module):
    """Per-modality embeddings, zeroed where a patient lacks the modality (torch.where: whatever is in that slot,
    even NaN, cannot reach the output), fused with the presence mask into class logits."""

    def __init__(
        self, layout: Layout, encoders: dict[str, nn.Module], spec: MultimodalModelSpec, n_classes: int
    ) -> None:
        super().__init__()
        self.layout, self.fusion, self.p_drop = layout, spec.fusion, spec.modality_dropout
        self.modalities = [m for m in MODALITIES if m in encoders]
        self.columns = [MODALITIES.index(m) for m in self.modalities]
        self.encoders = nn.ModuleDict({m: ModalityEncoder(encoders[m]) for m in self.modalities})
        k, e = len(self.modalities), spec.embedding
        fused = k * e if spec.fusion == "concat" else e
        if spec.fusion == "gated":
            self.gate = nn.Linear(k * e + k, k)
        elif spec.fusion == "attention":
            self.score = nn.Linear(e, 1)
        hidden = spec.head_hidden
        self.head = nn.Sequential(nn.Linear(fused + k, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, rows: Tensor) -> Tensor:
        """(N, layout.width) packed patients -> (N, classes) logits."""
        mask = self.layout.mask(rows)[:, self.columns]
        if self.training and self.p_drop > 0:
            mask = _drop_modalities(mask, self.p_drop)
        embeddings = torch.stack(
            [
                torch.where(mask[:, i : i + 1], self.encoders[m](self._part(rows, m, mask[:, i])), 0.0)
                for i, m in enumerate(self.modalities)
            ],
            dim=1,
        )  # (N, K, E)
        flags = mask.to(rows.dtype)
        if self.fusion == "concat":
            fused = embeddings.flatten(1)
        elif self.fusion == "gated":
            gates = torch.sigmoid(self.gate(torch.cat([embeddings.flatten(1), flags], dim=1))) * flags
            fused = (gates.unsqueeze(-1) * embeddings).sum(1) / flags.sum(1, keepdim=True).clamp(min=1.0)
        else:
            scores = self.score(embeddings).squeeze(-1).masked_fill(~mask, -1e4)
            fused = (torch.softmax(scores, dim=1).unsqueeze(-1) * embeddings).sum(1)
        return self.head(torch.cat([fused, flags], dim=1))

    def _part(self, rows: Tensor, modality: str, present: Tensor) -> Tensor:
        """The encoder's input cut from the packed rows."""
        part = rows[:, self.layout.parts[modality]]
        if modality == "image":
            return part.reshape(-1, *self.layout.image)
        if modality == "note":
            ids = part.long()
            # A patient without a note has no token; one placeholder token keeps attention from an all-masked row
            # (NaN in its backward pass, even where torch.where discards the output).
            return torch.cat([torch.where(present, ids[:, 0], 1).unsqueeze(1), ids[:, 1:]], dim=1)
        return part


def _drop_modalities(mask: Tensor, p: float) -> Tensor:
    """Hide each present modality with probability `p`, but never every one a patient has."""
    kept = mask & (torch.rand(mask.shape, device=mask.device) >= p)
    return torch.where(kept.any(dim=1, keepdim=True), kept, mask)


def build_multimodal_model(
    spec: MultimodalSpec, model: MultimodalModelSpec, tokenizer: Tokenizer, n_classes: int
) -> MultimodalNet:
    """The fused model of a study: encoders for the study's modalities only, each ending in `embedding` values."""
    e, layout = model.embedding, Layout.of(spec)
    encoders: dict[str, nn.Module] = {}
    if "record" in spec.modalities:
        encoders["record"] = build_tabular_model(spec.n_inputs, e, model.record())
    if "image" in spec.modalities:
        encoders["image"] = CLASSIFIERS[model.image_network](spec.channels, e, model.image())
    if "note" in spec.modalities:
        encoders["note"] = build_text_model(model.text(), tokenizer, spec.max_length, e)
    if "omics" in spec.modalities:
        mlp = build_tabular_model(len(spec.omics), e, model.omics_mlp())
        encoders["omics"] = nn.Sequential(nn.Dropout(model.omics_dropout), mlp)
    return MultimodalNet(layout, encoders, model, n_classes)
