"""`medfed-server export`: a study's final model as ONNX (the optional `export` extra), checked against torch with
onnxruntime on example inputs before it is kept."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.arrays import load_model_file
from shared.atomic import atomic_write
from shared.config import load_study
from shared.errors import ConfigError, MedfedError
from shared.tasks import build_model, get_task

OPSET = 17
TOLERANCE = 1e-4  # the largest difference from torch's outputs an export may show


@dataclass(frozen=True)
class Exported:
    """Where the ONNX model went, what its output is, and how far onnxruntime's outputs are from torch's on the example
    inputs."""

    path: Path
    output: str
    max_difference: float


FORMATS = ("onnx",)


def export_model(folder: Path, fmt: str, out: Path | None = None) -> Exported:
    """The output folder's final model in a format other tools run."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be {', '.join(FORMATS)}, got '{fmt[:40]}'", source="export")
    return export_onnx(folder, out)


def export_onnx(folder: Path, out: Path | None = None) -> Exported:
    """The output folder's model.safetensors as ONNX (default: model.onnx beside it), with a dynamic batch size."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError("format", "onnx needs the export extra: pip install -e '.[export]'", source="export") from exc
    study = load_study(folder / "study.json")
    task = get_task(study.task)
    task.check_study(study)
    model = build_model(study)
    load_model_file(model, folder / "model.safetensors")
    model.eval()
    torch.manual_seed(study.seed)
    sample = task.example_input(study, 2)
    path = out or folder / "model.onnx"
    what = f"study '{study.name}' (task {study.task}, model '{study.model.get('name', 'default')}')"
    try:
        atomic_write(path, lambda p: _export(model, sample, p))
    except MedfedError:
        raise
    except Exception as exc:  # the exporter's own errors: an operator ONNX lacks, a module it cannot trace
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise MedfedError(f"{what} cannot be exported to ONNX: {type(exc).__name__}: {reason}") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(sample).numpy()
    (got,) = session.run(None, {"input": sample.numpy()})
    difference = float(np.max(np.abs(got - expected)))
    if not difference <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise MedfedError(f"{what}: onnxruntime's outputs differ from torch's by {difference:.2e}; not exported")
    return Exported(path, task.output_meaning(study), difference)


def _export(model: torch.nn.Module, sample: torch.Tensor, path: Path) -> None:
    # TorchScript-based exporter (dynamo=False): it needs neither onnxscript nor a network. Its tracer warns about
    # Python-side shape checks (Opacus's attention): the dynamic batch is checked at another size by the tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not removed
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
