"""What a site's agent and worker are doing, kept beside site.toml for `medfed-site status`: connection and messages.

The agent records its state (joining, connected as node N, refused, stopped and why) and the last message its
SuperNode received, read off the SuperNode's log; the worker records each message it handled and the outcome. Each
writes its own small JSON file atomically, on changes only, and a failed write never stops either: the files are a
view for the site's IT, not state anything depends on. Nothing here leaves the site.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from client.sitefile import SiteFile
from shared.atomic import atomic_write_text

# Flower's own log lines (flwr/supernode/start_client_internal.py); a test feeds the installed Flower's format
NODE_ID = re.compile(r"SuperNode ID: (\d+)")
HEADER = re.compile(r"\[RUN (\d+)(?:, ROUND (\d+))?\]")
RECEIVING = re.compile(r"Receiving: (\S+) message")  # the type is the server's word: `describe` prints it safely


def status_file(site: SiteFile, part: str) -> Path:
    """The agent's ("agent") or the worker's ("worker") status file beside the site's site.toml."""
    return site.path.with_name(f".{site.name}-{part}.json")


def now() -> str:
    """The time, to the second, in UTC."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class StatusFile:
    """One process's status: a dict written whole, atomically, whenever it changes."""

    def __init__(self, path: Path, **fields: Any) -> None:
        self.path, self.state = path, {"pid": os.getpid(), "started-at": now(), **fields}
        self._header: tuple[int, int | None] | None = None
        self.save()

    def update(self, **fields: Any) -> None:
        """Change some fields and write the file."""
        self.state.update(fields)
        self.save()

    def save(self) -> None:
        """Write the file; a full disk or a moved folder costs only the view."""
        try:
            atomic_write_text(self.path, json.dumps(self.state, indent=1) + "\n", 0o600)
        except OSError:
            pass

    def read(self, line: str) -> None:
        """Take one line of the SuperNode's log (the agent's status): its node id, and each message it receives."""
        if found := NODE_ID.search(line):
            self.update(state="connected", node=found[1], since=now())
        elif found := HEADER.search(line):
            self._header = (int(found[1]), int(found[2]) if found[2] else None)
        elif (found := RECEIVING.search(line)) and self._header is not None:
            run, rnd = self._header
            self.update(**{"last-message": {"at": now(), "type": found[1], "run": run, "round": rnd}})


def load_status(path: Path) -> dict[str, Any] | None:
    """A status file's content, or None when there is none (or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether `pid` is a running medfed-site process (not another process that took a dead agent's PID)."""
    try:
        return b"medfed-site" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def describe(site: SiteFile, busy: int) -> tuple[list[str], bool]:
    """The lines `medfed-site status` prints: the agent, its connection and last message, the worker's last message,
    and whether a message is being handled now (`busy`: how many are on record); and whether the agent runs and is
    connected."""
    agent = load_status(status_file(site, "agent"))
    if agent is None:
        return [f"agent: no agent has run with {site.path.name} here yet (medfed-site start --config ...)"], False
    running = alive(int(agent.get("pid", 0))) and agent.get("state") != "stopped"
    state = "running" if running else "not running"
    lines = [f"agent: {state} (PID {agent.get('pid')}), started {_ago(agent['started-at'])}"]
    if not running and "stopped-at" in agent:
        lines.append(f"  stopped {_ago(agent['stopped-at'])}: {agent.get('reason')}")
    elif not running:
        lines.append("  it ended without saying why (killed, or the machine went down): see its log")
    elif agent.get("state") == "connected":
        lines.append(f"  connected to {agent['server']} as node {agent['node']} since {_ago(agent['since'])}")
    else:
        lines.append(
            f"  {agent.get('state')} {agent['server']}" + (f": {agent['reason']}" if agent.get("reason") else "")
        )
    if message := agent.get("last-message"):
        rnd = f", round {message['round']}" if message.get("round") is not None else ""
        lines.append(f"  last message received: {message['type']} of run {message['run']}{rnd}, {_ago(message['at'])}")
    worker = load_status(status_file(site, "worker"))
    if running and worker is not None and alive(int(worker.get("pid", 0))):
        handled = worker.get("last")
        lines.append(f"worker: running (PID {worker['pid']}), {worker.get('handled', 0)} message(s) handled")
        if handled:
            lines.append(
                f"  last handled: {handled['type']} of run {handled['run']}, {_ago(handled['at'])}: "
                f"{handled['outcome']} ({handled['seconds']:.1f} s)"
            )
        lines.append(f"  now: {'handling a message' if busy else 'idle'}")
    elif running and site.app_code == "server":
        lines.append('worker: none (app-code = "server": Flower runs the server\'s app for each message)')
    elif running:
        lines.append("worker: not running (the agent starts a new one within seconds)")
    # what the server sent (a message type, a run id) reaches the site's terminal as text, never as control codes
    return ["".join(c if c.isprintable() else "?" for c in line) for line in lines], (
        running and agent.get("state") == "connected"
    )


def _ago(stamp: str) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS UTC (N min ago)'."""
    then = dt.datetime.fromisoformat(stamp)
    seconds = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    age = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
    return f"{then:%Y-%m-%d %H:%M:%S} UTC ({age} ago)"
