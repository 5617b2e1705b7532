"""Model weights as Flower ArrayRecords, and the checks that keep a bad update out of the global model."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord
from safetensors import SafetensorError

from shared.errors import ConfigError

if TYPE_CHECKING:  # torch loads only where a model is built: SecAgg+ key-exchange messages never need it
    import torch
    from torch import nn


def exchanged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What travels: the state dict less frozen parameters (a pretrained encoder every site already holds)."""
    module = getattr(model, "_module", model)  # unwrap an Opacus GradSampleModule
    frozen = {name for name, p in module.named_parameters() if not p.requires_grad}
    return {k: v for k, v in module.state_dict().items() if k not in frozen}


def model_arrays(model: nn.Module) -> ArrayRecord:
    """The exchanged part of the model as an ArrayRecord, on CPU."""
    return ArrayRecord({k: v.detach().cpu() for k, v in exchanged_state(model).items()})


def load_arrays(model: nn.Module, arrays: ArrayRecord) -> None:
    """Load global weights into a model's exchanged part; a shape or key mismatch says which tensor differs."""
    problem = mismatch(ArrayRecord(exchanged_state(model)), arrays)
    if problem:
        raise ValueError(f"received weights do not fit the study's model: {problem}")
    module = getattr(model, "_module", model)
    module.load_state_dict(arrays.to_torch_state_dict(), strict=False)


def mismatch(expected: ArrayRecord, got: ArrayRecord) -> str | None:
    """Describe the first key/shape difference between two ArrayRecords, or None when they match."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        return f"missing tensors {missing[:3]}, unexpected tensors {extra[:3]}"
    for key in expected:
        if tuple(expected[key].shape) != tuple(got[key].shape):
            return f"tensor '{key}' has shape {tuple(got[key].shape)}, expected {tuple(expected[key].shape)}"
    return None


def non_finite(arrays: ArrayRecord) -> str | None:
    """Name the first tensor holding NaN or Inf, or None when all values are finite."""
    for key, array in arrays.items():
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return f"tensor '{key}' holds NaN or Inf values"
    return None


def read_model_file(path: Path) -> ArrayRecord:
    """The weights in a model file the server saved (safetensors); a missing or unreadable file says which."""
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ConfigError(str(path), "does not exist", source="model file")
    try:
        return ArrayRecord({k: Array(v) for k, v in load_file(str(path)).items()})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(str(path), f"is not a model file ({exc})", source="model file") from exc


def load_model_file(model: nn.Module, path: Path) -> None:
    """Load weights saved by the server (safetensors); a missing or foreign file says which."""
    try:
        load_arrays(model, read_model_file(path))
    except ValueError as exc:
        raise ConfigError(str(path), f"is not this study's model ({exc})", source="model file") from exc


def arrays_digest(arrays: ArrayRecord) -> str:
    """SHA-256 over the arrays' names, shapes, dtypes and bytes: identifies the global model a round starts from."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        values = np.ascontiguousarray(arrays[name].numpy())
        digest.update(f"{name}|{values.shape}|{values.dtype}|".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def wire_form(arrays: ArrayRecord) -> ArrayRecord:
    """The global model as it travels to the sites: float64 values (Flower's FedAdam aggregates in float64) as float32,
    the precision every site's model holds and would cast them to on loading, so half the bytes and the same weights;
    other tensors as they are."""
    return ArrayRecord(
        {k: Array(a.numpy().astype(np.float32)) if a.dtype == "float64" else a for k, a in arrays.items()}
    )


def update_norm(arrays: ArrayRecord, reference: ArrayRecord | None = None) -> float:
    """The L2 norm of `arrays - reference` (or of `arrays`) over the floating tensors, in float64 so as not to
    overflow."""
    total = 0.0
    for key, array in arrays.items():
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            base = 0.0 if reference is None else reference[key].numpy()
            total += float(np.sum(np.square(values.astype(np.float64) - base)))
    return float(np.sqrt(total))


def scale_update(arrays: ArrayRecord, reference: ArrayRecord, factor: float) -> ArrayRecord:
    """`reference + factor * (arrays - reference)` on the floating tensors; the others (counters) stay as sent."""
    out = {}
    for key, array in arrays.items():
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            ref = reference[key].numpy().astype(np.float64)
            values = (ref + factor * (values.astype(np.float64) - ref)).astype(values.dtype)
        out[key] = values
    return ArrayRecord({k: Array(v) for k, v in out.items()})
