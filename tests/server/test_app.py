"""The Flower app as Flower itself runs it: `flwr run .` on the Simulation Engine, the study from pyproject.toml's
flat keys (lists as comma-separated strings)."""

from __future__ import annotations

import json
import subprocess

import psutil

from server.deployment import PROJECT_ROOT
from shared.flower import flower_env, tool


def test_flwr_run_trains_the_built_in_study_from_the_flat_keys(tmp_path, monkeypatch):
    """`data.classes = "benign,malignant"` once reached the class weights as 16 characters: every site failed."""
    monkeypatch.delenv("RAY_ADDRESS")  # Flower starts a Ray of its own, as for a user: the suite's offers one CPU
    home, out = tmp_path / "flwr-home", tmp_path / "outputs"
    env = flower_env(FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    command = [
        tool("flwr"),
        "run",
        str(PROJECT_ROOT),
        "--stream",
        "--run-config",
        f'federation.rounds=2 output-dir="{out}"',
    ]
    try:
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        said = result.stdout + result.stderr
        histories = list(out.glob("breast-cancer-demo-*/history.json"))
        assert result.returncode == 0 and len(histories) == 1, said[-3000:]
        history = json.loads(histories[0].read_text())
        assert history["status"] == "completed" and not history["events"], said[-3000:]
        trained = {r["round"] for r in history["metrics"] if r["kind"] == "train" and r["site"] == "weighted"}
        assert trained == {1, 2}
        final = [r for r in history["metrics"] if r["kind"] == "eval" and r["site"] == "weighted"][-1]
        assert final["accuracy"] > 0.8  # the demo's majority class is 63 %: the model learnt, not just ran
    finally:  # `flwr run` leaves its local SuperLink running for the next run: this test's is ended
        for process in psutil.process_iter(["cmdline"]):
            if str(home) in " ".join(process.info["cmdline"] or []):
                process.kill()
