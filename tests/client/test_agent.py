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
from client.agent import (
    ACTIVATION_REFUSED,
    ACTIVATION_WAIT_S,
    CONNECT_RETRIES,
    CONNECT_WAIT_S,
    SERVER_ENDED,
    connection_failure,
    run_agent,
    supernode_command,
)
from client.cli import cli
from client.sitefile import load_site_file
from client.status import load_status, status_file
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
        (
            "Failed to initialize the connection to the SuperLink.\n[code: 2004] Failed to activate SuperNode.",
            f"fl.example.org:9092 refused this site's node for {ACTIVATION_WAIT_S:.0f} s: the coordinator must",
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


def test_the_refusal_the_agent_retries_is_the_installed_flowers():
    from flwr.common.constant import HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_PATIENCE
    from flwr.supercore.error.base import ApiErrorCode
    from flwr.supercore.error.catalog import API_ERROR_MAP

    assert ACTIVATION_REFUSED in API_ERROR_MAP[ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED].public_message
    assert ACTIVATION_WAIT_S > HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL  # a stale node has expired by then


def fake_supernode(tmp_path, monkeypatch, refusals: int) -> Path:
    """A SuperNode the server refuses to activate `refusals` times (as Flower 1.41 exits then), then runs and ends;
    a site worker that records each start. Returns the worker's record."""
    starts, workers = tmp_path / "supernode-starts", tmp_path / "worker-starts"
    refused = "Failed to initialize the connection to the SuperLink.\\n[code: 2004] Failed to activate SuperNode."
    script = (
        f"import pathlib, sys\np = pathlib.Path({str(starts)!r})\n"
        "n = len(p.read_text()) if p.exists() else 0\np.write_text('x' * (n + 1))\n"
        f"if n < {refusals}:\n    print('{refused}')\n    sys.exit(305)\n"
        "print('SuperNode ID: 1')\n"
    )
    worker = f"import os, time\nopen({str(workers)!r}, 'a').write(f'{{os.getpid()}}\\n')\ntime.sleep(60)"
    monkeypatch.setattr(client.agent, "supernode_command", lambda *_: [sys.executable, "-c", script])
    monkeypatch.setattr(client.agent, "worker_command", lambda *_: [sys.executable, "-c", worker])
    monkeypatch.setattr(client.agent, "ACTIVATION_RETRY_S", 0.3)
    return workers


def test_a_supernode_refused_while_its_old_node_counts_as_connected_joins_again(tmp_path, monkeypatch, capsys):
    """A site restarted before the server noticed its previous agent had gone is refused for up to a minute: the
    agent starts the SuperNode again until it joins, and its site worker keeps running meanwhile."""
    workers = fake_supernode(tmp_path, monkeypatch, refusals=2)
    code, log = run_agent(load_site_file(site_toml(tmp_path, "127.0.0.1:9")), insecure=True)
    assert "SuperNode ID" in log and ACTIVATION_REFUSED not in log  # the log of the one that joined
    assert capsys.readouterr().out.count("refused this site's node") == 2
    assert len(workers.read_text().split()) == 1  # one worker throughout


def test_a_supernode_the_server_ends_stops_the_agent_naming_a_removal(tmp_path, monkeypatch):
    """Flower's SuperNode exits 0 by itself when the SuperLink refuses its heartbeat (its node was unregistered):
    the agent stops too, not silently with success, and says what the coordinator did and what the site needs."""
    fake_supernode(tmp_path, monkeypatch, refusals=0)  # joins, then ends with 0
    site = load_site_file(site_toml(tmp_path, "127.0.0.1:9"))
    code, log = run_agent(site, insecure=True)
    assert code == SERVER_ENDED
    said = connection_failure(site, code, log)
    assert "removed this site from the federation (medfed-server remove-site" in said and "north.key" in said
    recorded = load_status(status_file(site, "agent"))  # what `medfed-site status` shows once the agent is gone
    assert (recorded["state"], recorded["node"], recorded["reason"]) == ("stopped", "1", said)


def test_a_supernode_refused_for_longer_stops_the_agent_and_says_why(tmp_path, monkeypatch):
    fake_supernode(tmp_path, monkeypatch, refusals=1000)
    monkeypatch.setattr(client.agent, "ACTIVATION_WAIT_S", 1.5)
    site = load_site_file(site_toml(tmp_path, "127.0.0.1:9"))
    started = time.monotonic()
    code, log = run_agent(site, insecure=True)
    assert code != 0 and time.monotonic() - started < 10
    assert len((tmp_path / "supernode-starts").read_text()) >= 3  # it did try again
    assert "or another agent with this key is still connected" in connection_failure(site, code, log)
