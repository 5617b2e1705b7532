"""Text models: a compact Transformer encoder Opacus can train, and a local pretrained Hugging Face encoder."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from opacus.layers import DPMultiheadAttention
from torch import Tensor, nn

from shared.errors import ConfigError
from shared.models import resolve
from shared.tasks.text.spec import TextModelSpec
from shared.tasks.text.tokenizer import ByteTokenizer, HashingTokenizer, PretrainedTokenizer, Tokenizer

log = logging.getLogger("medfed.models")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def masked_mean(hidden: Tensor, keep: Tensor) -> Tensor:
    """Mean of the (N, L, D) states over each note's real tokens."""
    weights = keep.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class EncoderBlock(nn.Module):
    """Post-norm Transformer block on Opacus's DPMultiheadAttention (plain Linear layers, clippable per sample)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = DPMultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        """Self-attention over the real tokens, then the feed-forward layer, each with a residual."""
        attended, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class TextTransformer(nn.Module):
    """Token + position embeddings, `layers` encoder blocks, mean pooling over real tokens, a linear head."""

    def __init__(self, vocab_size: int, max_length: int, n_classes: int, spec: TextModelSpec, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.tokens = nn.Embedding(vocab_size, spec.dim)
        self.positions = nn.Embedding(max_length, spec.dim)
        self.blocks = nn.ModuleList(EncoderBlock(spec.dim, spec.heads, spec.dropout) for _ in range(spec.layers))
        self.head = nn.Linear(spec.dim, n_classes)

    def forward(self, ids: Tensor) -> Tensor:
        """(N, L) token ids -> (N, classes) logits."""
        padding = ids == self.pad_id
        # Positions are looked up per note (N, L), not once (L,): Opacus needs the batch dimension on every input.
        positions = torch.arange(ids.shape[1], device=ids.device).repeat(ids.shape[0], 1)
        x = self.tokens(ids) + self.positions(positions)
        for block in self.blocks:
            x = block(x, padding)
        return self.head(masked_mean(x, ~padding))


class PretrainedClassifier(nn.Module):
    """A local Hugging Face encoder (frozen but for its last `trainable` layers) under a new linear head."""

    def __init__(self, encoder: nn.Module, n_classes: int, trainable: int, pad_id: int) -> None:
        super().__init__()
        self.encoder, self.pad_id = encoder, pad_id
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)
        encoder.requires_grad_(False)
        if trainable:
            for layer in _layers(encoder)[-trainable:]:
                layer.requires_grad_(True)

    def forward(self, ids: Tensor) -> Tensor:
        """(N, L) token ids -> (N, classes) logits from the mean of the last hidden states."""
        keep = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=keep.long()).last_hidden_state
        return self.head(masked_mean(hidden, keep))


def fixed_tokenizer(spec: TextModelSpec, tokenizer: str, vocab_size: int) -> Tokenizer:
    """The study's fixed tokenizer: the pretrained model's own, else `tokenizer` ("hashing" into `vocab_size`
    buckets, or "bytes")."""
    if spec.name == "pretrained":
        return PretrainedTokenizer(pretrained_folder(spec) / "tokenizer.json")
    return HashingTokenizer(vocab_size) if tokenizer == "hashing" else ByteTokenizer()


def build_text_model(spec: TextModelSpec, tokenizer: Tokenizer, max_length: int, n_outputs: int) -> nn.Module:
    """The compact Transformer, or the local pretrained encoder under a new head; `n_outputs` values per note."""
    if spec.name == "pretrained":
        return load_pretrained(spec, n_outputs, tokenizer.pad_id, max_length)
    return TextTransformer(tokenizer.vocab_size, max_length, n_outputs, spec, tokenizer.pad_id)


def pretrained_folder(spec: TextModelSpec) -> Path:
    """The offered folder of the study's pretrained encoder, checked for what loading needs and against the pins."""
    return resolve(spec.encoder, spec.sha256, ("config.json", "tokenizer.json"), WEIGHT_FILES)


def load_pretrained(spec: TextModelSpec, n_classes: int, pad_id: int, max_length: int) -> PretrainedClassifier:
    """The study's pretrained encoder from its local folder (never a hub download), under a new head; notes of
    `max_length` tokens must fit its positions."""
    folder = pretrained_folder(spec)
    try:
        from safetensors import SafetensorError
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ConfigError("model.name", "'pretrained' needs the extra: pip install 'medfed[pretrained]'") from exc
    hf_logging.disable_progress_bar()
    try:
        if torch.get_default_device().type == "meta":  # sized before it is loaded (shared.tasks.footprint)
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
        else:
            encoder = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:  # SafetensorError: a corrupt file
        log.error("model '%s' in %s cannot be loaded: %s", spec.encoder, folder, exc)
        raise ConfigError("model.encoder", f"'{spec.encoder}' cannot be loaded here (the local log says why)") from exc
    positions = getattr(encoder.config, "max_position_embeddings", max_length)
    if max_length > positions:
        raise ConfigError("data.max-length", f"is {max_length}, '{spec.encoder}' reads at most {positions} tokens")
    layers = _layers(encoder)
    if spec.trainable_layers > len(layers):
        raise ConfigError("model.trainable-layers", f"is {spec.trainable_layers}, the encoder has {len(layers)} layers")
    return PretrainedClassifier(encoder, n_classes, spec.trainable_layers, pad_id)


def _layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of Transformer layers (the ModuleList as long as config.num_hidden_layers)."""
    depth = encoder.config.num_hidden_layers
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise ConfigError("model.trainable-layers", f"cannot find the {depth} layers of {type(encoder).__name__}")
