"""The site agent: the local pre-flight check, then Flower's SuperNode and the site worker, kept running together."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from client.site import SiteConfig, load_site_data
from client.sitefile import SiteFile
from shared.config import StudyConfig
from shared.flower import flower_env, tool
from shared.tasks import get_task

log = logging.getLogger("medfed.site")
WORKER_RESTART_PAUSE_S = 1.0


def preflight(site: SiteFile, study: StudyConfig | None = None) -> dict[str, Any]:
    """The site's data report (schema, counts, label balance, missing values, unreadable files), kept local.

    Without a study, the data is described as it is (the site config's [data] hints, e.g. the label column).
    """
    if study is None:
        options = get_task(site.task).infer_data(site.data_path, site.name, site.data_hints)
        study = StudyConfig.from_dict({"name": "pre-flight", "task": site.task, "data": options})
    return load_site_data(SiteConfig.from_site_file(site), study).report


def worker_secret(site: SiteFile) -> Path:
    """A fresh secret for this start, readable by the agent's user only: the SuperNode hands tasks to no one else."""
    path = site.path.with_name(f".{site.name}-worker.secret")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
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
    ]
    if secret is not None:
        command += ["--isolation", "process", "--superexec-auth-secret-file", str(secret)]
    if insecure:
        return [*command, "--insecure"]
    command += ["--root-certificates", str(site.ca_certificate), "--auth-supernode-private-key", str(site.private_key)]
    if site.policy.trusted_publishers:
        command += ["--trusted-entities", site.policy.trusted_publishers]
    return command


def worker_command(site: SiteFile, secret: Path) -> list[str]:
    """The site worker's command line (`medfed-site worker`), from this same installed medfed."""
    return [
        str(Path(sys.executable).with_name("medfed-site")),
        "worker",
        "--config",
        str(site.path),
        "--secret-file",
        str(secret),
    ]


def run_agent(site: SiteFile, insecure: bool) -> int:
    """Run the SuperNode and, unless the site runs the server's app, the site worker; restart the worker whenever
    it dies; return the SuperNode's exit code once it ends (or stop both on SIGTERM/SIGINT)."""
    env = flower_env()
    if site.app_code == "server":
        env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1")
        return subprocess.call(supernode_command(site, insecure), env=env)
    secret = worker_secret(site)
    supernode = subprocess.Popen(supernode_command(site, insecure, secret), env=env)
    worker: subprocess.Popen | None = None

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while supernode.poll() is None:
            if worker is None or worker.poll() is not None:
                if worker is not None:
                    print(
                        f"site '{site.name}': the site worker exited with code {worker.returncode}; restarting it",
                        flush=True,
                    )
                    time.sleep(WORKER_RESTART_PAUSE_S)
                worker = subprocess.Popen(worker_command(site, secret), env=env)
            time.sleep(0.2)
        return supernode.returncode
    finally:
        for proc in (worker, supernode):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (worker, supernode):
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        secret.unlink(missing_ok=True)
