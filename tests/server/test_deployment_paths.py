"""Paths medfed hands to Flower's processes are absolute, whatever folder the operator typed them from."""

from __future__ import annotations

import json
import socket
import subprocess
import tomllib
from pathlib import Path

from server import deployment
from server.deployment import flower_home, superlink_command
from server.provision import Federation, provision
from shared.config import INITIAL_MODEL_FILE
from shared.tasks import get_task


def flags(command: list[str]) -> dict[str, str]:
    """Each `--option value` pair of a command line."""
    return {a: b for a, b in zip(command, command[1:], strict=False) if a.startswith("--") and not b.startswith("--")}


def test_a_relative_federation_folder_gives_flower_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    provision(Path("federation"), ["127.0.0.1"], ["north"])
    fed = Federation(Path("federation"))
    assert fed.root == tmp_path.resolve() / "federation"
    given = flags(superlink_command(fed, "127.0.0.1", 9092))
    for option in ("--database", "--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile"):
        assert Path(given[option]).is_absolute(), option
    home = flower_home(fed, "127.0.0.1:9092")
    connection = tomllib.loads((home / "config.toml").read_text())["superlink"]["medfed"]
    assert home.is_absolute() and Path(connection["root-certificates"]).is_file()
    assert Path(connection["root-certificates"]).is_absolute()


def test_submit_hands_flwr_run_an_absolute_app_and_run_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        deployment, "flwr", lambda home, *args: seen.append(args) or subprocess.CompletedProcess(args, 0, "ok", "")
    )
    home = Path("home")
    home.mkdir()
    deployment.submit(home, get_task("tabular").demo_study(), stream=False, app=Path("."))
    args = seen[0]
    assert Path(args[1]).is_absolute() and Path(args[args.index("--run-config") + 1]).is_absolute()
    assert INITIAL_MODEL_FILE not in tomllib.loads(Path(args[args.index("--run-config") + 1]).read_text())
    deployment.submit(home, get_task("tabular").demo_study(), False, Path("models/m.safetensors"), app=Path("."))
    run_config = tomllib.loads(Path(seen[1][seen[1].index("--run-config") + 1]).read_text())
    assert run_config[INITIAL_MODEL_FILE] == str(tmp_path.resolve() / "models" / "m.safetensors")


def test_a_medfed_checkout_in_the_operators_folder_does_not_turn_flwr_commands_into_app_paths(tmp_path, monkeypatch):
    # `flwr supernode register KEY medfed`, run from a folder holding the medfed checkout, once failed Flower's
    # "legacy usage" migration (it read `medfed` as an app folder) and `medfed-server start` stopped there.
    provision(tmp_path / "federation", ["127.0.0.1"], ["north"])
    fed = Federation(tmp_path / "federation")
    (tmp_path / deployment.CONNECTION).mkdir()
    (tmp_path / deployment.CONNECTION / "pyproject.toml").write_text('[project]\nname = "medfed"\n')
    monkeypatch.chdir(tmp_path)
    with socket.socket() as probe:  # a port nothing listens on: the command must try it and fail to connect
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = deployment.flwr(flower_home(fed, address), "supernode", "ls", deployment.CONNECTION, "--format", "json")
    said = result.stdout + result.stderr
    assert "legacy" not in said and "pyproject.toml" not in said, said
    assert f"Using SuperLink: {deployment.CONNECTION} ({address})" in json.loads(result.stdout)["error-message"]
