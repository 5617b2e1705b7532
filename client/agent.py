"""The site agent: the local pre-flight check, then the Flower SuperNode started from the site's config file.

The SuperNode runs as a child of `medfed-site start`, in a process group of its own: the site's IT supervises the one
PID of `medfed-site start`, which passes SIGINT, SIGTERM and SIGHUP on to the group and ends the group when the
SuperNode exits. When it gives up connecting, `medfed-site start` reads its log and names the likely cause.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from client.site import SiteConfig, load_site_data
from client.sitefile import SiteFile
from shared.config import StudyConfig
from shared.flower import tool
from shared.tasks import get_task

# Flower's own bounds on reconnecting: a wrong CA or an unregistered key fails every attempt, so the agent must stop
# and say why. A server restart shorter than this is still waited out.
CONNECT_RETRIES = 30
CONNECT_WAIT_S = 600
CAUSES = (  # checked in order against the SuperNode's log: TLS and key errors also read as "unavailable"
    ("tls", ("certificate", "ssl", "handshake", "tsi_", "tls")),
    ("authentication", ("unauthenticated", "permission_denied", "permission denied", "public key")),
    ("unreachable", ("connection refused", "unavailable", "errno 111", "resolve", "deadline", "failed to connect")),
)


def preflight(site: SiteFile, study: StudyConfig | None = None) -> dict[str, Any]:
    """The site's data report (schema, counts, label balance, missing values, unreadable files), kept local.

    Without a study, the data is described as it is (the site config's [data] hints, e.g. the label column).
    """
    if study is None:
        options = get_task(site.task).infer_data(site.data_path, site.name, site.data_hints)
        study = StudyConfig.from_dict({"name": "pre-flight", "task": site.task, "data": options})
    return load_site_data(SiteConfig.from_site_file(site), study).report


def supernode_command(site: SiteFile, insecure: bool = False) -> list[str]:
    """The `flower-supernode` command line: TLS against the kit's CA and the site's authentication key."""
    command = [
        tool("flower-supernode"),
        "--superlink",
        site.server,
        "--port",
        str(site.agent_port),
        "--node-config",
        f'site-config="{site.path}"',
        "--max-retries",
        str(CONNECT_RETRIES),
        "--max-wait-time",
        str(CONNECT_WAIT_S),
    ]
    if insecure:
        return [*command, "--insecure"]
    command += ["--root-certificates", str(site.ca_certificate), "--auth-supernode-private-key", str(site.private_key)]
    if site.policy.trusted_publishers:
        command += ["--trusted-entities", site.policy.trusted_publishers]
    return command


def run_agent(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the SuperNode as this process's child, echoing its log; return its exit code and the log's last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=200)
    # Its own process group: the SuperNode's helpers (flower-superexec) would outlive it and keep retrying otherwise.
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as child:
        passed_on = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        before = {sig: signal.signal(sig, lambda signum, _: os.killpg(child.pid, signum)) for sig in passed_on}
        echo = threading.Thread(target=_echo, args=(child.stdout, tail), daemon=True)
        echo.start()
        try:
            code = child.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            for sig, handler in before.items():
                signal.signal(sig, handler)
        echo.join(timeout=5)
    return code, "".join(tail)


def _echo(stream: IO[str], tail: collections.deque[str]) -> None:
    for line in stream:
        sys.stdout.write(line)
        tail.append(line)


def connection_failure(site: SiteFile, code: int, log: str) -> str:
    """Why the agent stopped, from the SuperNode's exit code and log: TLS, authentication, or an unreachable server."""
    text = log.lower()
    cause = next((name for name, marks in CAUSES if any(m in text for m in marks)), None)
    if cause == "tls":
        return (
            f"the TLS handshake with {site.server} failed: ca-certificate ({site.ca_certificate}) must be the "
            "federation's CA from this site's kit, and the server's certificate must name the host in `server`"
        )
    if cause == "authentication":
        return (
            f"{site.server} refused this site's key: private-key ({site.private_key}) must be this site's key from "
            "its kit, and the coordinator must have registered it (medfed-server register)"
        )
    if cause == "unreachable":
        return (
            f"{site.server} could not be reached within {CONNECT_RETRIES} attempts / {CONNECT_WAIT_S} s: check the "
            "address, the port and that outbound HTTPS to it is allowed"
        )
    return f"the agent (Flower SuperNode) exited with code {code}; its log is above"
