"""A whole federation on one machine, as real processes over TLS: for deployment tests and the loopback benchmark.

Every process runs in its own process group and is killed by PID on `close`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from client.agent import worker_tasks_folder
from client.receipts import DROPPED, RECEIVED, RECEIVING
from client.sitefile import load_site_file
from server.provision import provision
from shared.children import dying_with_parent
from shared.config import StudyConfig
from shared.tasks import get_task

BIN = Path(sys.executable).parent
FAILED = "Connection attempt failed"  # a SuperNode's call failed: it tries again after a backoff of up to 20 s
# ...until the call gets through, gives up, or the server answers that the call's run is not running any more
RETRIES_ENDED = re.compile(r"Connection successful after|Giving up reconnection|not in `RUNNING` status")


def retrying(log: str) -> bool:
    """Whether a SuperNode's log ends in a failed call that it is still retrying."""
    last = log.rfind(FAILED)
    return last >= 0 and not RETRIES_ENDED.search(log, last)


def receiving(log: str) -> bool:
    """Whether a SuperNode's log ends in a message it is still receiving (client.receipts reads the same lines).

    It pulls a message's header, then its content, and waits without logging while the content is "not available
    yet": a message the killed ServerApp had not finished pushing holds it until Flower ends that run."""
    started = [match.end() for match in RECEIVING.finditer(log)]
    if not started:
        return False
    rest = log[started[-1] :]
    return RECEIVED not in rest and DROPPED.search(rest) is None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loopback:
    """A federation on 127.0.0.1 whose processes are all killed (whole process groups) on `close`."""

    def __init__(self, root: Path, sites: list[str]) -> None:
        self.root, self.port = root, free_port()
        self.fed = provision(root / "federation", ["127.0.0.1", "localhost"], sites, self.port)
        self.data = get_task("tabular").write_demo_sites(root / "data", len(sites))
        self.processes: dict[str, subprocess.Popen] = {}
        self.worker_tasks: dict[str, Path] = {}  # each started site's worker's in-flight folder
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "FLWR_HOME": str(root / "flwr-home")}

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        """Start a process in its own group in the root folder, logging to root/<name>.log."""
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # a test process that dies (a timeout) takes its federation with it
            dying_with_parent(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            cwd=self.root,
        )
        self.processes[name] = proc
        return proc

    def start_server(self) -> subprocess.Popen:
        """`medfed-server start` on loopback, as the README writes it (a relative path); returns once every site key
        is registered."""
        proc = self.spawn(
            "server", str(BIN / "medfed-server"), "start", "--federation", "federation", "--listen", "127.0.0.1"
        )
        self.wait_log("server", "SuperLink running at", 90)
        return proc

    def restart_server(self, timeout: float = 300) -> None:
        """SIGKILL the server and start it again; returns once every running agent has settled: not still handling
        or receiving a message of the killed server's run, and its SuperNode not waiting out a retry backoff (up to
        20 s, which could time out a study's first stage). Only a SuperNode that called while the server was down
        retries: one busy with a reply all that time reaches the new server at its first try, and logs nothing."""
        sites = [name for name, proc in self.processes.items() if name != "server" and proc.poll() is None]
        start = {name: len(self.log(name)) for name in sites}
        self.kill("server")
        self.start_server()

        def unsettled() -> list[str]:
            return [n for n in sites if not self.idle(n) or retrying(self.log(n)[start[n] :])]

        deadline, settled_at = time.monotonic() + timeout, None
        while settled_at is None or time.monotonic() < settled_at + 3:  # a SuperNode with nothing to do calls every 3 s
            if waiting := unsettled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"site(s) {', '.join(waiting)} did not settle within {timeout} s")
                settled_at = None
            elif settled_at is None:
                settled_at = time.monotonic()
            time.sleep(0.3)

    def busy(self, name: str) -> bool:
        """Whether a site's worker is handling a message (client.inflight keeps one file for each)."""
        return any(self.worker_tasks[name].glob("*.json"))

    def idle(self, name: str) -> bool:
        """Whether a site is neither handling a message nor still receiving one."""
        return not self.busy(name) and not receiving(self.log(name))

    def log(self, name: str) -> str:
        """A process's log so far."""
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def site_config(self, name: str, data: Path, policy: str = "", kit: Path | None = None) -> Path:
        """Fill the site's kit template: its data, a free agent port, and an optional [policy] body."""
        kit = kit or self.fed.site(name)
        text = (kit / "site.toml").read_text().replace("/path/to/your/data.csv", str(data))
        text = re.sub(r'(?m)^label = "outcome"', 'label = "diagnosis"', text)
        text = re.sub(r"(?m)^agent-port = \d+", f"agent-port = {free_port()}", text)
        if policy:
            text = text.split("\n[policy]\n")[0] + "\n[policy]\n" + policy
        else:
            text = text.replace("min-sites = 3", "min-sites = 2")
        path = kit / "site.toml"
        path.write_text(text)
        return path

    def start_site(self, name: str, config: Path) -> subprocess.Popen:
        """`medfed-site start --config site.toml`, the path relative to the root folder."""
        self.worker_tasks[name] = worker_tasks_folder(load_site_file(config))
        return self.spawn(name, str(BIN / "medfed-site"), "start", "--config", os.path.relpath(config, self.root))

    def submit(self, study: StudyConfig, folder: Path) -> None:
        """Submit the study as the operator does."""
        path = folder / "study.json"
        path.write_text(study.to_json())
        result = subprocess.run(
            [
                str(BIN / "medfed-server"),
                "submit",
                "--federation",
                str(self.fed.root),
                "--study",
                str(path),
                "--no-stream",
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"submit failed: {result.stdout}{result.stderr}")

    def history(self, study: StudyConfig) -> Path:
        """Where the submitted study's history.json is written (under the server kit's outputs)."""
        found = sorted((self.fed.server / study.output_dir).glob(f"{study.name}-*/study.json"))
        return found[-1].with_name("history.json") if found else self.fed.server / "pending" / "history.json"

    def wait_log(self, name: str, text: str, timeout: float) -> None:
        """Wait until a process's log shows `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name):
                return
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited {self.processes[name].returncode}:\n{self.log(name)[-3000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"'{text}' not in {name}'s log within {timeout} s:\n{self.log(name)[-3000:]}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one process's whole group (the agent's SuperNode and its ClientApps, or the server's)."""
        proc = self.processes.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def close(self) -> None:
        """Kill everything still running."""
        for name in list(self.processes):
            self.kill(name)


def wait_history(where, done, timeout: float) -> dict:
    """Poll a history.json (`where()` gives its path) until `done(history)` holds."""
    deadline = time.monotonic() + timeout
    history, path = {}, where()
    while time.monotonic() < deadline:
        path = where()
        if path.is_file():
            try:
                history = json.loads(path.read_text())
            except json.JSONDecodeError:
                history = {}
            if history and done(history):
                return history
        time.sleep(0.5)
    raise TimeoutError(f"{path}: not done within {timeout} s; last: {json.dumps(history)[:2000]}")
