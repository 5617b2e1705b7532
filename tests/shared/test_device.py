"""The site's device setting: CPU, CUDA or one GPU by index, each refused clearly when it is not there."""

from __future__ import annotations

import pytest
import torch

from shared.device import resolve_device
from shared.errors import ConfigError


def test_cpu_and_auto_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="asks for CUDA but no GPU is visible"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CUDA", "cuda:0 ", "mps"])
def test_a_malformed_device_names_the_setting(bad):
    with pytest.raises(ConfigError, match=rf"device.*must be auto, cpu, cuda or cuda:N, got '{bad}'"):
        resolve_device(bad)


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"asks for GPU 2, but torch sees 2 \(cuda:0 to cuda:1"):
        resolve_device("cuda:2")
