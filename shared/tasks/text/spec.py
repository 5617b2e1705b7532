"""The text study schema every site shares: columns, classes, tokenizer, length; and the model's options."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.config import StudyConfig, parse_section, raise_first
from shared.tasks.size import SiteSize

TOKENIZERS = ("hashing", "bytes")
ON_EMPTY = ("drop", "fail")
MODELS = ("transformer", "pretrained")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class TextSpec(SiteSize):
    """`[data]` of a text study. A site's notes are a CSV or JSONL file with a text and a label column.

    The tokenizer is fixed before training and never learnt from site text: "hashing" (lower-cased words hashed
    into `vocab-size` buckets) or "bytes" (UTF-8 bytes) for a model trained from scratch; a pretrained model always
    uses its own tokenizer.json.
    """

    classes: list[Any] = field(default_factory=list)
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 256
    tokenizer: str = "hashing"
    vocab_size: int = 32768
    on_empty: str = "drop"
    test_fraction: float = 0.2
    split_seed: int = -1

    def __post_init__(self) -> None:
        problems = [
            (len(self.classes) < 2, "data.classes", "must list at least two labels agreed for the study"),
            (self.max_length < 8, "data.max-length", "must be at least 8 tokens"),
            (self.tokenizer not in TOKENIZERS, "data.tokenizer", f"must be one of {', '.join(TOKENIZERS)}"),
            (self.vocab_size < 256, "data.vocab-size", "must be at least 256"),
            (self.on_empty not in ON_EMPTY, "data.on-empty", f"must be one of {', '.join(ON_EMPTY)}"),
            (not 0 < self.test_fraction < 1, "data.test-fraction", "must be in (0, 1)"),
            *self.size_problems(),
        ]
        raise_first(problems)

    @property
    def class_names(self) -> list[str]:
        """Labels as strings; index i is class i."""
        return [str(c) for c in self.classes]


@dataclass(frozen=True)
class TextModelSpec:
    """`[model]` of a text study.

    "transformer" is a compact encoder trained from scratch (`dim`, `layers`, `heads`). "pretrained" loads a
    Hugging Face encoder, `encoder`: a name each site (and the server) maps to a local folder of its own, never a
    path; it trains the classification head plus the last `trainable-layers` layers, and only those travel.
    `sha256` pins the weights file every site must hold.
    """

    name: str = "transformer"
    dim: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    encoder: str = ""
    sha256: str = ""
    trainable_layers: int = 0

    def __post_init__(self) -> None:
        problems = [
            (self.name not in MODELS, "model.name", f"must be one of {', '.join(MODELS)}"),
            (self.dim < 8 or self.dim % max(self.heads, 1), "model.dim", "must be at least 8 and divisible by heads"),
            (self.layers < 1, "model.layers", "must be at least 1"),
            (self.heads < 1, "model.heads", "must be at least 1"),
            (not 0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)"),
            (
                self.name == "pretrained" and not MODEL_NAME.fullmatch(self.encoder),
                "model.encoder",
                "must name a pretrained model the sites offer (letters, digits, '.', '_', '-'; never a path)",
            ),
            (self.trainable_layers < 0, "model.trainable-layers", "must be >= 0"),
        ]
        raise_first(problems)


def data_spec(study: StudyConfig) -> TextSpec:
    """Parse and validate the study's `[data]` section."""
    return parse_section(TextSpec, study.data, "data.")


def model_spec(study: StudyConfig) -> TextModelSpec:
    """Parse and validate the study's `[model]` section."""
    return parse_section(TextModelSpec, study.model, "model.")
