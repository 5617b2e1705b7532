"""The multimodal benchmark's `--parts`: only the parts named run, and an unknown part is refused before any runs."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from simulations.benchmarks import multimodal


def stub_parts(monkeypatch) -> list[str]:
    """Replace each part by a stub that records its name; the list of names run, in order."""
    ran: list[str] = []
    monkeypatch.setattr(multimodal.torch, "set_num_threads", lambda n: None)  # leave the test process's threads
    monkeypatch.setattr(multimodal, "dp_ratio", lambda work, repeats: ran.append("dp-ratio") or {"ratio": 0.5})
    monkeypatch.setattr(multimodal, "demo_benchmark", lambda work, rounds, console: ran.append("demo") or {})
    monkeypatch.setattr(multimodal, "gse_benchmark", lambda *args: ran.append("gse7390") or {})
    return ran


def run(tmp_path, *args: str):
    """Invoke the benchmark's command line with `--out tmp_path/out.json` and `args`."""
    app = typer.Typer()
    app.command()(multimodal.main)
    return CliRunner().invoke(app, ["--out", str(tmp_path / "out.json"), *args])


def test_only_the_named_parts_run(tmp_path, monkeypatch):
    ran = stub_parts(monkeypatch)
    result = run(tmp_path, "--parts", "demo")
    assert result.exit_code == 0, result.output
    assert ran == ["demo"]
    written = json.loads((tmp_path / "out.json").read_text())
    assert set(written) == {"command", "demo"} and written["command"].endswith("--parts demo")


def test_every_part_runs_by_default(tmp_path, monkeypatch):
    ran = stub_parts(monkeypatch)
    assert run(tmp_path).exit_code == 0
    assert sorted(ran) == sorted(multimodal.PARTS)


def test_an_unknown_part_is_refused_naming_the_choices(tmp_path, monkeypatch):
    ran = stub_parts(monkeypatch)
    result = run(tmp_path, "--parts", "demo,dp_ratio")
    assert result.exit_code != 0
    assert "gse7390, demo, dp-ratio" in result.output and ran == []
