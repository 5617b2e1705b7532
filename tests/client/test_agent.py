"""The site agent stops after a bounded number of connection attempts and names the likely cause."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import client.agent
from client.agent import CONNECT_RETRIES, CONNECT_WAIT_S, connection_failure, supernode_command
from client.cli import cli
from client.sitefile import load_site_file
from shared.tasks import get_task
from tests.processes import child_pids, ended, wait_for


def site_toml(tmp_path, server: str):
    data = get_task("tabular").write_demo_sites(tmp_path / "data", 2)[0]
    path = tmp_path / "kit" / "site.toml"
    path.parent.mkdir()
    port = free_port()
    path.write_text(
        f'name = "north"\nserver = "{server}"\nprivate-key = "north.key"\nagent-port = {port}\n'
        f'[data]\npath = "{data}"\ntask = "tabular"\nlabel = "diagnosis"\n'
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_supernode_gives_up_after_bounded_attempts(tmp_path):
    command = supernode_command(load_site_file(site_toml(tmp_path, "fl.example.org:9092")))
    assert command[command.index("--max-retries") + 1] == str(CONNECT_RETRIES)
    assert command[command.index("--max-wait-time") + 1] == str(CONNECT_WAIT_S)


@pytest.mark.parametrize(
    ("log", "says"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:9092: Ssl handshake failed: "
            "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
            "the TLS handshake with fl.example.org:9092 failed: ca-certificate (",
        ),
        (
            "grpc status StatusCode.UNAUTHENTICATED: Public key not recognized",
            "fl.example.org:9092 refused this site's key: private-key (",
        ),
        (
            "Failed to initialize the connection to the SuperLink.\n[Errno 111] Connection refused",
            "fl.example.org:9092 could not be reached within 30 attempts / 600 s",
        ),
        ("Something else entirely", "the agent (Flower SuperNode) exited with code 1; its log is above"),
    ],
)
def test_the_cause_is_named_from_the_supernodes_log(tmp_path, log, says):
    site = load_site_file(site_toml(tmp_path, "fl.example.org:9092"))
    assert connection_failure(site, 1, log).startswith(says)


def test_an_agent_facing_a_closed_port_stops_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(client.agent, "CONNECT_RETRIES", 1)
    monkeypatch.setattr(client.agent, "CONNECT_WAIT_S", 5)
    server = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["start", "--config", str(site_toml(tmp_path, server)), "--insecure"])
    assert time.monotonic() - started < 30
    assert result.exit_code != 0, result.output
    assert f"site 'north' stopped: {server} could not be reached within 1 attempts / 5 s" in result.output


def test_the_supernode_and_the_worker_stop_when_the_agent_is_killed(tmp_path):
    """Even a SIGKILL of `medfed-site start` alone leaves no SuperNode or site worker running; the agent that stays
    running holds neither torch nor the site's data (its pre-flight check ran in a child that has exited)."""
    config = site_toml(tmp_path, f"127.0.0.1:{free_port()}")  # nothing listens: the SuperNode keeps retrying
    agent = subprocess.Popen(
        [str(Path(sys.executable).with_name("medfed-site")), "start", "--config", str(config), "--insecure"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        children = wait_for(lambda: len(child_pids(agent.pid)) == 2 and child_pids(agent.pid), 60)
        assert "libtorch" not in Path(f"/proc/{agent.pid}/maps").read_text()
        agent.kill()
        agent.wait(timeout=10)
        wait_for(lambda: all(ended(pid) for pid in children), 20)
    finally:
        agent.kill()


def test_a_site_whose_data_fails_the_preflight_check_does_not_start_and_says_why(tmp_path):
    config = site_toml(tmp_path, f"127.0.0.1:{free_port()}")
    config.write_text(config.read_text().replace('label = "diagnosis"', 'label = "outcome"'))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("medfed-site")), "start", "--config", str(config), "--insecure"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not ready:" in result.stdout and "outcome" in result.stdout  # the check's own reason, naming the column
    assert "not starting: the pre-flight check of site 'north' failed (its reason is above)" in result.stdout
    assert "joining" not in result.stdout
