"""`medfed-site status`: the agent's and worker's own account, read off Flower's log lines, and the exit code."""

from __future__ import annotations

import inspect
import os

import pytest
from flwr.supernode import start_client_internal
from typer.testing import CliRunner

import client.status
from client.cli import cli
from client.sitefile import load_site_file
from client.status import StatusFile, describe, load_status, status_file

COLOUR = "\x1b[92mINFO \x1b[0m:      "  # as the SuperNode writes its lines to a pipe


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "north"\nserver = "fl.example.org:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{tmp_path / "data.csv"}"\ntask = "tabular"\n'
    )
    return load_site_file(path)


def test_the_installed_flower_logs_the_lines_the_status_reads():
    source = inspect.getsource(start_client_internal)
    for text in ('"SuperNode ID: %s"', '"[RUN %s, ROUND %s]"', '"[RUN %s]"', '"Receiving: %s message (ID: %s)"'):
        assert text in source, text


def test_the_agent_records_its_node_and_each_message_its_supernode_receives(site):
    status = StatusFile(status_file(site, "agent"), server=site.server, state="joining")
    assert load_status(status.path)["state"] == "joining" and oct(status.path.stat().st_mode)[-3:] == "600"
    for line in [
        f"{COLOUR}SuperNode ID: 8757964605517716637",
        f"{COLOUR}[RUN 17, ROUND 3]",
        f"{COLOUR}Receiving: train message (ID: {'a' * 64})",
        f"{COLOUR}Received successfully",
    ]:
        status.read(line)
    saved = load_status(status.path)
    assert (saved["state"], saved["node"]) == ("connected", "8757964605517716637")
    assert {k: saved["last-message"][k] for k in ("type", "run", "round")} == {"type": "train", "run": 17, "round": 3}
    status.read(f"{COLOUR}[RUN 18]")  # a message outside any round
    status.read(f"{COLOUR}Receiving: query message (ID: {'b' * 64})")
    assert load_status(status.path)["last-message"]["round"] is None


def test_a_status_file_that_cannot_be_written_costs_only_the_view(tmp_path):
    status = StatusFile(tmp_path / "gone" / "agent.json")  # its folder does not exist
    status.update(state="connected")
    assert status.state["state"] == "connected" and load_status(status.path) is None


def cli_status(site) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["status", "--config", str(site.path)])
    return result.exit_code, " ".join(result.output.split())


def test_status_says_whether_the_agent_runs_is_connected_and_what_it_last_did(site, monkeypatch):
    assert cli_status(site) == (
        1,
        "agent: no agent has run with site.toml here yet (medfed-site start --config ...) "
        f"privacy spent so far: medfed-site ledger show --config {site.path}",
    )
    monkeypatch.setattr(client.status, "alive", lambda pid: pid == os.getpid())  # this process plays the agent
    agent = StatusFile(status_file(site, "agent"), server=site.server, state="joining")
    code, said = cli_status(site)
    assert code == 1 and "agent: running (PID" in said and "joining fl.example.org:9092" in said
    for line in ("SuperNode ID: 42", "[RUN 17, ROUND 3]", "Receiving: train message (ID: ab)"):
        agent.read(line)
    worker = StatusFile(status_file(site, "worker"))
    last = {"at": client.status.now(), "type": "train", "run": 17, "outcome": "answered", "seconds": 2.31}
    worker.update(handled=4, last=last)
    code, said = cli_status(site)
    assert code == 0, said
    assert "connected to fl.example.org:9092 as node 42 since" in said
    assert "last message received: train of run 17, round 3," in said
    assert "worker: running (PID" in said and "4 message(s) handled" in said
    assert "last handled: train of run 17," in said and ": answered (2.3 s) now: idle" in said
    agent.update(
        state="stopped", reason="stopped by a signal (Ctrl-C, SIGTERM or SIGHUP)", **{"stopped-at": last["at"]}
    )
    code, said = cli_status(site)
    assert code == 1 and "agent: not running" in said and "s ago): stopped by a signal" in said
    assert "worker:" not in said  # an agent's worker ends with it


def test_an_agent_killed_without_a_word_is_not_shown_running(site, monkeypatch):
    monkeypatch.setattr(client.status, "alive", lambda pid: False)
    StatusFile(
        status_file(site, "agent"), server=site.server, state="connected", node="42", since="2026-01-01T00:00:00+00:00"
    )
    lines, connected = describe(site, busy=0)
    assert not connected and lines[0].startswith("agent: not running")
    assert lines[1] == "  it ended without saying why (killed, or the machine went down): see its log"


def test_what_the_server_names_reaches_the_terminal_as_text_not_control_codes(site, monkeypatch):
    monkeypatch.setattr(client.status, "alive", lambda pid: True)
    agent = StatusFile(status_file(site, "agent"), server=site.server, state="connected", node="42")
    agent.update(since=client.status.now())
    agent.read("[RUN 17, ROUND 3]")
    agent.read("Receiving: \x1b]0;owned\x07\x1b[2Jtrain message (ID: ab)")  # a hostile server's message type
    lines, _ = describe(site, busy=0)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert any("last message received: ?]0;owned??[2Jtrain of run 17" in line for line in lines)


def test_a_pid_is_the_agents_only_while_it_runs_medfed_site():
    assert not client.status.alive(os.getpid())  # pytest, not medfed-site: a reused PID is not the agent
    assert not client.status.alive(2**22 + 1)  # beyond Linux's PID range
