"""The multimodal study schema every site shares: the record's features as for a table, and the image, note and
omics columns with their fixed preprocessing; the model's encoders and fusion head."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, ClassVar

import pandas as pd

from shared.config import StudyConfig, parse_section, raise_first
from shared.errors import ConfigError
from shared.tasks.imaging.spec import ImagingModelSpec, ImagingSpec
from shared.tasks.tabular.spec import TabularModelSpec, TabularSpec, infer_data_options
from shared.tasks.text.spec import TOKENIZERS, TextModelSpec

MODALITIES = ("record", "image", "note", "omics")  # the order of the presence mask
FUSIONS = ("concat", "gated", "attention")
TOO_FEW = ("sit-out", "refuse")
IMAGE_NETWORKS = ("cnn", "resnet18")
# A study comes from the server: its sizes bound every site's memory and compute.
MAX_IMAGE_SIZE = 256
MAX_NOTE_TOKENS = 1024
MAX_VOCAB = 1 << 17
MAX_OMICS = 50_000
MAX_EMBEDDING = 1024  # any layer's width
MAX_TEXT_DIM = 512  # with MAX_VOCAB, a token table of at most 64 M values
MAX_DEPTH = 8  # hidden layers of an MLP, Transformer layers


@dataclass(frozen=True)
class MultimodalSpec(TabularSpec):
    """`[data]` of a multimodal study: one row per patient; the record's `features` as in a tabular study (may be
    empty), plus

    - `image-column`: a PNG, JPEG or DICOM path relative to the table's folder (and inside it);
    - `note-column`: free text, tokenized by the fixed `tokenizer` into `max-length` tokens;
    - `omics`: the molecular feature columns, the same list at every site: columns of the table, or, with
      `omics-file`, of a matrix file beside the table (CSV or Parquet, one row per patient) keyed by the patient id
      column `id-column` that both files hold.

    An empty cell means the patient lacks that modality; a site without the column lacks it for everyone, unless it
    is listed in `required`. A modality held by fewer than `min-patients` training patients at a site is refused
    there (`too-few = "refuse"`) or trains nothing there (`"sit-out"`).
    """

    features_optional: ClassVar[bool] = True  # patients may have no record columns, when other modalities exist

    image_column: str = ""
    image_size: int = 28
    channels: int = 1
    dicom_window: list[float] = field(default_factory=list)
    note_column: str = ""
    max_length: int = 48
    tokenizer: str = "hashing"
    vocab_size: int = 4096
    omics: list[str] = field(default_factory=list)
    omics_file: str = ""  # empty: the omics columns are the table's
    id_column: str = ""  # the patient id column of the table and the omics file
    required: list[str] = field(default_factory=list)
    min_patients: int = 10
    too_few: str = "sit-out"

    def __post_init__(self) -> None:
        super().__post_init__()
        columns = [c for c in (self.image_column, self.note_column, self.id_column) if c] + list(self.omics)
        repeated = [c for c, n in Counter(columns).items() if n > 1]
        clash = sorted(set(columns) & {self.label, *self.features}) or repeated
        unknown = sorted(set(self.required) - set(self.modalities))
        raise_first(
            [
                (
                    not self.modalities,
                    "data",
                    "names no modality: list record features, an image-column, a note-column or omics",
                ),
                (not 8 <= self.image_size <= MAX_IMAGE_SIZE, "data.image-size", f"must be in 8..{MAX_IMAGE_SIZE}"),
                (self.channels not in (1, 3), "data.channels", "must be 1 (grayscale) or 3 (RGB)"),
                (not 8 <= self.max_length <= MAX_NOTE_TOKENS, "data.max-length", f"must be in 8..{MAX_NOTE_TOKENS}"),
                (self.tokenizer not in TOKENIZERS, "data.tokenizer", f"must be one of {', '.join(TOKENIZERS)}"),
                (not 256 <= self.vocab_size <= MAX_VOCAB, "data.vocab-size", f"must be in 256..{MAX_VOCAB}"),
                (len(self.omics) > MAX_OMICS, "data.omics", f"must list at most {MAX_OMICS} columns"),
                (bool(clash), "data", f"column '{clash[0] if clash else ''}' is given two roles"),
                *self.omics_file_problems(),
                (bool(unknown), "data.required", f"names {unknown}, not among the study's {self.modalities}"),
                (self.min_patients < 1, "data.min-patients", "must be at least 1"),
                (self.too_few not in TOO_FEW, "data.too-few", f"must be one of {', '.join(TOO_FEW)}"),
            ]
        )
        ImagingSpec(classes=self.classes, dicom_window=self.dicom_window)  # the DICOM window's own checks

    def omics_file_problems(self) -> list[tuple[bool, str, str]]:
        """The omics matrix settings' checks, as (bad, field, problem) for `raise_first`: a study takes omics from the
        table or from one file inside each site's data folder, keyed by a patient id column."""
        path = PurePath(self.omics_file)
        return [
            (
                bool(self.omics_file) and (path.is_absolute() or ".." in path.parts or path.name in ("", ".")),
                "data.omics-file",
                "must name a file relative to each site's table folder, inside it (no absolute path, no '..')",
            ),
            (bool(self.omics_file) and not self.omics, "data.omics", "must list the columns to read from omics-file"),
            (
                bool(self.omics_file) and not self.id_column,
                "data.id-column",
                "must name the patient id column that keys both the table and data.omics-file",
            ),
            (
                bool(self.id_column) and not self.omics_file,
                "data.id-column",
                "keys the table to data.omics-file, which is not set: omics columns in the table need no id column",
            ),
        ]

    @property
    def modalities(self) -> list[str]:
        """The study's modalities, in mask order: those whose columns the study names."""
        named = {"record": self.features, "image": self.image_column, "note": self.note_column, "omics": self.omics}
        return [m for m in MODALITIES if named[m]]

    @property
    def window(self) -> tuple[float, float] | None:
        """The DICOM window as (centre, width), or None for each file's own."""
        return (float(self.dicom_window[0]), float(self.dicom_window[1])) if self.dicom_window else None


@dataclass(frozen=True)
class MultimodalModelSpec:
    """`[model]` of a multimodal study: one encoder per modality, each ending in an `embedding`-wide vector, and a
    late-fusion head. Encoders reuse the single-modality tasks' networks: the tabular MLP (record), the imaging CNN or
    ResNet-18 (image), the text task's Transformer or pretrained encoder (note: `text-network`, and for "pretrained"
    `text-encoder`, `text-sha256` and `text-trainable-layers` as the text task's `encoder`, `sha256` and
    `trainable-layers`) and an MLP behind input dropout (omics: thousands of features on a few hundred patients).
    `modality-dropout` hides each present modality of a training patient with that probability (never all of them),
    so the model does not lean on one modality."""

    fusion: str = "concat"
    embedding: int = 32
    head_hidden: int = 32
    modality_dropout: float = 0.2
    record_hidden: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.1
    image_network: str = "cnn"
    image_width: int = 8
    text_network: str = "transformer"
    text_dim: int = 32
    text_layers: int = 1
    text_heads: int = 2
    text_encoder: str = ""
    text_sha256: str = ""
    text_trainable_layers: int = 0
    omics_hidden: list[int] = field(default_factory=lambda: [64])
    omics_dropout: float = 0.5

    def __post_init__(self) -> None:
        raise_first(
            [
                (self.fusion not in FUSIONS, "model.fusion", f"must be one of {', '.join(FUSIONS)}"),
                (not 2 <= self.embedding <= MAX_EMBEDDING, "model.embedding", f"must be in 2..{MAX_EMBEDDING}"),
                (not 1 <= self.head_hidden <= MAX_EMBEDDING, "model.head-hidden", f"must be in 1..{MAX_EMBEDDING}"),
                (not 0 <= self.modality_dropout < 1, "model.modality-dropout", "must be in [0, 1)"),
                (not 0 <= self.omics_dropout < 1, "model.omics-dropout", "must be in [0, 1)"),
                (
                    self.image_network not in IMAGE_NETWORKS,
                    "model.image-network",
                    f"must be one of {', '.join(IMAGE_NETWORKS)}",
                ),
                *(
                    (
                        len(widths) > MAX_DEPTH
                        or any(not isinstance(h, int) or not 1 <= h <= MAX_EMBEDDING for h in widths),
                        f"model.{name}",
                        f"must list at most {MAX_DEPTH} widths in 1..{MAX_EMBEDDING}",
                    )
                    for name, widths in (("record-hidden", self.record_hidden), ("omics-hidden", self.omics_hidden))
                ),
                (not 4 <= self.image_width <= 128, "model.image-width", "must be in 4..128"),
                (not 8 <= self.text_dim <= MAX_TEXT_DIM, "model.text-dim", f"must be in 8..{MAX_TEXT_DIM}"),
                (not 1 <= self.text_layers <= MAX_DEPTH, "model.text-layers", f"must be in 1..{MAX_DEPTH}"),
                (not 1 <= self.text_heads <= 16, "model.text-heads", "must be in 1..16"),
            ]
        )
        # The reused encoders' own checks, with this section's field names.
        for check in (self.record, self.image, self.text):
            check()

    def record(self) -> TabularModelSpec:
        """The record encoder's options, as the tabular task's MLP takes them."""
        return _renamed(lambda: TabularModelSpec("mlp", self.record_hidden, self.dropout), {"hidden": "record-hidden"})

    def omics_mlp(self) -> TabularModelSpec:
        """The omics encoder's MLP options."""
        return _renamed(lambda: TabularModelSpec("mlp", self.omics_hidden, self.dropout), {"hidden": "omics-hidden"})

    def image(self) -> ImagingModelSpec:
        """The image encoder's options, as the imaging task's networks take them."""
        return _renamed(lambda: ImagingModelSpec(self.image_network, self.image_width), {"width": "image-width"})

    def text(self) -> TextModelSpec:
        """The note encoder's options, as the text task's models take them."""
        return _renamed(
            lambda: TextModelSpec(
                self.text_network,
                self.text_dim,
                self.text_layers,
                self.text_heads,
                self.dropout,
                self.text_encoder,
                self.text_sha256,
                self.text_trainable_layers,
            ),
            {
                "name": "text-network",
                "dim": "text-dim",
                "layers": "text-layers",
                "heads": "text-heads",
                "encoder": "text-encoder",
                "sha256": "text-sha256",
                "trainable-layers": "text-trainable-layers",
            },
        )


def _renamed(build: Callable[[], Any], names: dict[str, str]) -> Any:
    """Build a reused encoder's spec; its error names this section's field (`model.text-dim`, not `model.dim`)."""
    try:
        return build()
    except ConfigError as exc:
        name = exc.field.removeprefix("model.")
        raise ConfigError(f"model.{names.get(name, name)}", exc.problem) from exc


def infer_multimodal_options(
    table: pd.DataFrame, hints: dict[str, Any], categorical: list[str] | None, exclude: list[str] | None = None
) -> dict[str, Any]:
    """Record features, classes and category lists of a table the data scientist holds (simulation, a site's check);
    the image, note and omics columns that `hints` name are not record features. `hints` win."""
    if not hints.get("label"):
        raise ConfigError("data.label", "must name the label column of a table")
    roles = [hints.get(k, "") for k in ("image-column", "note-column", "id-column")] + list(hints.get("omics", []))
    inferred = infer_data_options(table, hints["label"], categorical, exclude=[*roles, *(exclude or [])])
    return {**inferred, **{k: v for k, v in hints.items() if k != "categorical"}}


def data_spec(study: StudyConfig) -> MultimodalSpec:
    """Parse and validate the study's `[data]` section."""
    return parse_section(MultimodalSpec, study.data, "data.")


def model_spec(study: StudyConfig) -> MultimodalModelSpec:
    """Parse and validate the study's `[model]` section."""
    return parse_section(MultimodalModelSpec, study.model, "model.")
