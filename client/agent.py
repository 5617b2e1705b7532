"""The site agent: Flower's SuperNode and the site worker, kept running together, after the pre-flight check.

Both run as children of `medfed-site start`, in its process group: the site's IT supervises the one PID of
`medfed-site start`, which ends both on SIGINT, SIGTERM or SIGHUP and when the SuperNode exits, and starts a new site
worker whenever the worker dies. The children are also told by the kernel to stop if the agent itself is killed.
When the SuperNode gives up connecting, `medfed-site start` reads its log and names the likely cause; one the server
refuses to activate is started again for a while (a site restarted before the server saw its last agent go).
"""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from client.receipts import ReceiptWriter
from client.sitefile import SiteFile
from client.status import StatusFile, now, status_file
from shared.children import dying_with_parent, end
from shared.flower import flower_env, tool

# Flower's own bounds on reconnecting: a wrong CA or an unregistered key fails every attempt, so the agent must stop
# and say why. A server restart shorter than this is still waited out.
CONNECT_RETRIES = 30
CONNECT_WAIT_S = 600
CAUSES = (  # checked in order against the SuperNode's log: TLS and key errors also read as "unavailable"
    ("tls", ("certificate", "ssl", "handshake", "tsi_", "tls")),
    ("authentication", ("unauthenticated", "permission_denied", "permission denied", "public key")),
    ("unreachable", ("connection refused", "unavailable", "errno 111", "resolve", "deadline", "failed to connect")),
)


# Flower's public message when the SuperLink refuses to activate a node (API error 2004, SuperNode exit 305): for a
# key it does not hold, and for a node it still counts online. A SuperNode that ended without telling the SuperLink
# (killed, or the SuperLink was down at that moment) leaves its node counted online until it misses two heartbeats
# (Flower: 2 x 30 s), so the agent of a site restarted within that time tries again for a while rather than stop; a
# site started just before the coordinator registers its key joins then too.
ACTIVATION_REFUSED = "Failed to activate SuperNode"
ACTIVATION_WAIT_S = 150.0
ACTIVATION_RETRY_S = 10.0
# The agent's exit code when its SuperNode ended by itself (exit 0, which the agent never asks for: it ends the
# SuperNode only on its own way out). Flower's SuperNode does so when the SuperLink refuses its heartbeat: its node
# was unregistered (`medfed-server remove-site`) or is unknown to a SuperLink whose state was reset.
SERVER_ENDED = 3
WORKER_RESTART_PAUSE_S = 1.0
PREFLIGHT_WAIT_S = 3600.0  # the check reads every row or image once: a large imaging folder takes a while
MEDFED_SITE = str(Path(sys.executable).with_name("medfed-site"))  # this same installed medfed's command


def run_preflight(site: SiteFile) -> str | None:
    """Run `medfed-site check` on the site's config in a child process, which prints its report; why the site must
    not start, or None. The agent that stays running so never holds torch or the site's data."""
    command = [MEDFED_SITE, "check", "--config", str(site.path)]
    try:
        code = subprocess.run(dying_with_parent(command), timeout=PREFLIGHT_WAIT_S, check=False).returncode
    except subprocess.TimeoutExpired:
        return f"the pre-flight check of site '{site.name}' took more than {PREFLIGHT_WAIT_S:.0f} s"
    return None if code == 0 else f"the pre-flight check of site '{site.name}' failed (its reason is above)"


def worker_secret(site: SiteFile) -> Path:
    """A fresh secret for this start, readable by the agent's user only: the SuperNode hands tasks to no one else."""
    path = site.path.with_name(f".{site.name}-worker.secret")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path


def worker_tasks_folder(site: SiteFile) -> Path:
    """Where the site worker keeps the messages it is handling (client.inflight), one file each."""
    return site.path.with_name(f".{site.name}-worker.tasks")


def worker_tasks(site: SiteFile) -> Path:
    """A fresh `worker_tasks_folder`, the agent's user's only."""
    path = worker_tasks_folder(site)
    shutil.rmtree(path, ignore_errors=True)  # a previous agent's tasks died with its SuperNode
    path.mkdir(mode=0o700)
    return path


def supernode_command(site: SiteFile, insecure: bool = False, secret: Path | None = None) -> list[str]:
    """The `flower-supernode` command line: TLS against the kit's CA and the site's authentication key; with
    `secret`, in process isolation, so that only the site worker holding that secret runs its tasks."""
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
    if secret is not None:
        command += ["--isolation", "process", "--superexec-auth-secret-file", str(secret)]
    if insecure:
        return [*command, "--insecure"]
    command += ["--root-certificates", str(site.ca_certificate), "--auth-supernode-private-key", str(site.private_key)]
    if site.policy.trusted_publishers:
        command += ["--trusted-entities", site.policy.trusted_publishers]
    return command


def worker_command(site: SiteFile, secret: Path, tasks: Path) -> list[str]:
    """The site worker's command line (`medfed-site worker`), from this same installed medfed."""
    return [
        MEDFED_SITE,
        "worker",
        "--config",
        str(site.path),
        "--secret-file",
        str(secret),
        "--tasks-dir",
        str(tasks),
    ]


def run_agent(site: SiteFile, insecure: bool) -> tuple[int, str]:
    """Run the SuperNode (echoing its log) and, unless the site runs the server's app, the site worker, restarted
    whenever it dies; return the SuperNode's exit code (SERVER_ENDED for one that ended by itself) and its log's
    last lines once it ends. A SuperNode the server refuses to activate (an unregistered key, or this site's previous
    node still counted as connected) is started again every ACTIVATION_RETRY_S for up to ACTIVATION_WAIT_S, the
    worker running meanwhile. The agent's state goes to its status file throughout (client.status)."""
    env = flower_env()
    secret = None if site.app_code == "server" else worker_secret(site)
    tasks = None if secret is None else worker_tasks(site)
    if secret is None:  # Flower's own executor starts one ClientApp process per message; a 0.1 s poll costs nothing
        env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1")
    worker = None if secret is None or tasks is None else worker_command(site, secret, tasks)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    children: dict[str, subprocess.Popen] = {}
    status = StatusFile(status_file(site, "agent"), server=site.server, state="joining")
    ended = "stopped by a signal (Ctrl-C, SIGTERM or SIGHUP)"

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    def tend(done: Callable[[], bool]) -> None:
        while not done():
            if worker is not None:
                _keep_worker(site.name, worker, env, children)
            time.sleep(0.2)

    passed_on = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {sig: signal.signal(sig, stop) for sig in passed_on}
    refused_since: float | None = None
    try:
        while True:
            tail.clear()
            children["supernode"] = supernode = subprocess.Popen(
                dying_with_parent(supernode_command(site, insecure, secret)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            receipts = None if tasks is None else ReceiptWriter(tasks)
            echo = threading.Thread(target=_echo, args=(supernode.stdout, tail, receipts, status), daemon=True)
            echo.start()
            tend(lambda supernode=supernode: supernode.poll() is not None)
            echo.join(timeout=5)
            log = "".join(tail)
            code = SERVER_ENDED if supernode.returncode == 0 else supernode.returncode
            refused_since = time.monotonic() if refused_since is None else refused_since
            if (
                ACTIVATION_REFUSED not in log
                or time.monotonic() + ACTIVATION_RETRY_S - refused_since > ACTIVATION_WAIT_S
            ):
                ended = connection_failure(site, code, log)
                return code, log
            reason = (
                "its key is not registered there (yet, or no longer: a removed site needs a new key), or the server "
                "still counts an earlier agent of this site as connected (for about a minute after one that did not "
                "stop cleanly)"
            )
            status.update(state="refused by", reason=reason)
            print(
                f"site '{site.name}': {site.server} refused this site's node: {reason}; trying again in "
                f"{ACTIVATION_RETRY_S:.0f} s",
                flush=True,
            )
            resume = time.monotonic() + ACTIVATION_RETRY_S
            tend(lambda resume=resume: time.monotonic() >= resume)
    finally:
        end(children.values())
        status.update(state="stopped", reason=ended, **{"stopped-at": now()})
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if secret is not None:
            secret.unlink(missing_ok=True)
        if tasks is not None:
            shutil.rmtree(tasks, ignore_errors=True)


def _keep_worker(site: str, command: list[str], env: dict[str, str], children: dict[str, subprocess.Popen]) -> None:
    worker = children.get("worker")
    if worker is not None and worker.poll() is None:
        return
    if worker is not None:
        print(f"site '{site}': the site worker exited with code {worker.returncode}; restarting it", flush=True)
        time.sleep(WORKER_RESTART_PAUSE_S)
    children["worker"] = subprocess.Popen(dying_with_parent(command), env=env)


def _echo(stream: IO[str], tail: collections.deque[str], receipts: ReceiptWriter | None, status: StatusFile) -> None:
    for line in stream:
        if receipts is not None:
            receipts.read(line)
        status.read(line)
        sys.stdout.write(line)
        sys.stdout.flush()  # a site's log is often a pipe or a file (systemd, nohup): show each line when it comes
        tail.append(line)


def connection_failure(site: SiteFile, code: int, log: str) -> str:
    """Why the agent stopped, from the SuperNode's exit code and log: the server ended its node, TLS,
    authentication, or an unreachable server."""
    if code == SERVER_ENDED:
        return (
            f"{site.server} ended this site's node: the coordinator removed this site from the federation "
            "(medfed-server remove-site; it rejoins only with a new key from the coordinator, in place of "
            f"{site.private_key.name} and {site.private_key.with_suffix('.pub').name}), or reset the server's state "
            "(then start this agent again)"
        )
    if ACTIVATION_REFUSED in log:
        return (
            f"{site.server} refused this site's node for {ACTIVATION_WAIT_S:.0f} s: the coordinator must register "
            "this site's key (medfed-server register; a removed site needs a new key), or another agent with this "
            "key is still connected (on another machine, or a service beside one started by hand): stop it, then "
            "start this one again"
        )
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
