"""ONNX export: every exportable model type (tiny configs) gives onnxruntime outputs within 1e-4 of torch's, with a
dynamic batch size; what cannot be exported is said by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from server.cli import cli
from server.export import TOLERANCE, export_onnx
from server.outputs import StudyOutputs
from shared.arrays import load_model_file, model_arrays
from shared.config import StudyConfig
from shared.tasks import build_model, get_task

onnxruntime = pytest.importorskip("onnxruntime")

MODELS = {
    "tabular-mlp": ("tabular", {"name": "mlp", "hidden": [16, 8]}, {}),
    "imaging-cnn": ("imaging", {"name": "cnn", "width": 4}, {"image-size": 16}),
    "imaging-resnet18": ("imaging", {"name": "resnet18", "width": 4}, {"image-size": 16, "channels": 3}),
    "segmentation-unet": ("segmentation", {"name": "unet", "width": 4}, {"image-size": 16}),
    "text-transformer": ("text", {"name": "transformer", "dim": 16, "layers": 1, "heads": 2}, {"max-length": 16}),
    "survival-cox": ("survival", {"name": "cox"}, {}),
    "survival-discrete": ("survival", {"name": "discrete", "hidden": [8]}, {}),
    "multimodal-attention": ("multimodal", {"fusion": "attention", "embedding": 8, "text-dim": 8}, {"max-length": 8}),
    "multimodal-gated": ("multimodal", {"fusion": "gated", "embedding": 8, "text-dim": 8}, {"max-length": 8}),
}


def study_folder(tmp_path, task: str, model: dict, data: dict, privacy: str = "off") -> tuple[StudyConfig, object]:
    """An output folder holding a tiny study of the task and its (randomly initialised) model."""
    base = get_task(task).demo_study()
    raw = base.to_dict()
    raw["model"] = model
    raw["data"] = {**raw["data"], **data}
    raw["privacy"]["mode"] = privacy
    study = StudyConfig.from_dict(raw)
    outputs = StudyOutputs(tmp_path / task)
    outputs.write_study(study)
    torch.manual_seed(0)
    outputs.save_model("model.safetensors", model_arrays(build_model(study)))
    return study, outputs.folder


@pytest.mark.parametrize("kind", list(MODELS))
def test_onnxruntime_matches_torch_within_tolerance(kind, tmp_path):
    task, model, data = MODELS[kind]
    study, folder = study_folder(tmp_path, task, model, data)
    exported = export_onnx(folder)
    assert exported.path == folder / "model.onnx" and exported.max_difference <= TOLERANCE
    # Another batch size than the traced one: the batch axis is dynamic.
    torch.manual_seed(1)
    sample = get_task(task).example_input(study, 5)
    net = build_model(study)
    load_model_file(net, folder / "model.safetensors")
    with torch.no_grad():
        expected = net.eval()(sample).numpy()
    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": sample.numpy()})
    assert got.shape == expected.shape and np.max(np.abs(got - expected)) <= TOLERANCE


def test_a_dp_compatible_model_exports_and_the_command_says_where(tmp_path):
    _, folder = study_folder(tmp_path, "imaging", {"name": "cnn", "width": 4}, {"image-size": 16}, privacy="local")
    result = CliRunner().invoke(cli, ["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "m.onnx" in result.output and (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("tabular-mlp", "output 'output': class logits, one per class (softmax gives the probabilities)"),
        ("segmentation-unet", "output 'output': per-pixel class logits, batch x class x height x width"),
        ("survival-cox", "output 'output': the linear predictor, the log relative hazard (higher: earlier event)"),
        ("survival-discrete", "output 'output': hazard logits, one per interval (0, c1], (c1, c2], ... up to each of"),
    ],
)
def test_the_command_says_what_the_models_output_is(kind, says, tmp_path):
    """A Cox model's output is no logit, nor a U-Net's a row per patient: whoever runs the file must know which."""
    study, folder = study_folder(tmp_path, *MODELS[kind])
    result = CliRunner().invoke(cli, ["export", str(folder), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert says in " ".join(result.output.split()), result.output
    if kind == "survival-discrete":
        intervals = len(study.data["cut-points"])
        assert f"the study's {intervals} cut points" in " ".join(result.output.split())


def test_an_unknown_format_and_a_folder_without_a_model_are_refused_by_name(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "tflite"])
    assert result.exit_code == 2 and "'format' must be onnx" in result.output
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "onnx"])
    assert result.exit_code == 2 and "study.json" in result.output and "does not exist" in result.output
    _, folder = study_folder(tmp_path, *MODELS["tabular-mlp"])
    (folder / "model.safetensors").unlink()
    result = CliRunner().invoke(cli, ["export", str(folder), "--format", "onnx"])
    assert result.exit_code == 2 and "model.safetensors" in result.output
    assert not (folder / "model.onnx").exists()
