"""Paths medfed hands to Flower's processes are absolute, whatever folder the operator typed them from."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from server import deployment
from server.deployment import flower_home, superlink_command
from server.provision import Federation, provision
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
