"""Run the federation on Flower's Deployment Engine: the SuperLink command, site registration, study submission."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from server.provision import Federation
from server.status import bound_nodes
from shared.config import INITIAL_MODEL_FILE, StudyConfig
from shared.errors import MedfedError
from shared.flower import flower_env, tool

CONNECTION = "medfed"
PORT_WAIT_S = 10.0
UNREGISTERED = "unregistered: its key cannot join again; give it a new one (medfed-server remove-site, then add-site)"
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the Flower app: pyproject.toml with [tool.flwr.app]


def superlink_command(fed: Federation, listen: str, port: int, insecure: bool = False) -> list[str]:
    """`flower-superlink` with TLS and SuperNode authentication, state kept in the server kit (survives restarts)."""
    command = [
        tool("flower-superlink"),
        "--host",
        listen,
        "--port",
        str(port),
        "--database",
        str(fed.server / "state.db"),
        "--disable-runtime-dependency-installation",
    ]
    if insecure:
        return [*command, "--insecure"]
    return [
        *command,
        "--ssl-ca-certfile",
        str(fed.server / "ca.crt"),
        "--ssl-certfile",
        str(fed.server / "server.pem"),
        "--ssl-keyfile",
        str(fed.server / "server.key"),
        "--enable-supernode-auth",
    ]


def flower_home(fed: Federation, address: str, insecure: bool = False) -> Path:
    """A FLWR_HOME for the operator's `flwr` commands, with one connection to this federation's SuperLink."""
    home = fed.server / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    trust = "insecure = true" if insecure else f'root-certificates = "{fed.server / "ca.crt"}"'
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "{address}"\n{trust}\n'
    )
    return home


def flwr(home: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run the `flwr` CLI against the federation's connection, from `home` (see `flwr_process`); one that takes longer
    than `timeout` (a SuperLink that accepts connections but does not answer) is ended and reported."""
    try:
        return subprocess.run(**flwr_process(home, *args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        command = " ".join(args[:2])
        raise MedfedError(f"`flwr {command}` got no answer from the SuperLink within {timeout:.0f} s") from exc


def flwr_process(home: Path, *args: str) -> dict[str, Any]:
    """A `flwr` command's arguments, environment and folder.

    It runs in `home`, not in the operator's folder: `flwr` takes a connection name for an app folder when a folder of
    that name holds a pyproject.toml (the medfed checkout beside the federation is one) and then fails its "legacy"
    migration instead of connecting.
    """
    home = home.resolve()
    return {"args": [tool("flwr"), *args], "env": flower_env(FLWR_HOME=str(home)), "cwd": home}


def check_port_free(listen: str, port: int, wait: float = PORT_WAIT_S) -> None:
    """Raise, naming the port, when something on this machine still listens on it after `wait` seconds (a server
    still running; a SuperLink whose medfed-server was just killed is given that long to close)."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to listen on
            try:
                probe.bind((listen, port))
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise MedfedError(
                        f"cannot listen on {listen}:{port} ({exc.strerror}): is another medfed-server or SuperLink "
                        "running?"
                    ) from exc
        time.sleep(0.5)


def wait_for_superlink(link: subprocess.Popen, address: str, timeout: float) -> None:
    """Block until the SuperLink accepts TCP connections at host:port; raise if it exits or takes too long."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link.poll() is not None:
            raise MedfedError(f"the SuperLink exited (code {link.returncode}) before opening {address}; see its log")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise MedfedError(f"the SuperLink did not open {address} within {timeout:.0f} s")


def register_sites(fed: Federation, home: Path) -> dict[str, str]:
    """Unregister removed sites' keys, then register every provisioned site's public key with the SuperLink;
    already registered keys are kept."""
    # A restarted SuperLink keeps its registrations: one listing instead of a `flwr` process per site.
    nodes = list_nodes(home)
    outcome = {f"{label} (removed)": "unregistered" for label in unregister_removed(fed, home, nodes)}
    keys = fed.site_keys()
    for name, node in bound_nodes(keys, nodes).items():
        if node is not None:  # Flower never registers a key again once it was unregistered
            outcome[name] = UNREGISTERED if node["status"] == "unregistered" else "already registered"
            continue
        result = flwr(home, "supernode", "register", str(keys[name]), CONNECTION)
        text = (result.stdout + result.stderr).lower()
        if result.returncode == 0:
            outcome[name] = "registered"
        elif "already" in text or "exists" in text:
            outcome[name] = "already registered"
        else:
            raise MedfedError(f"registering site '{name}' failed: {(result.stdout + result.stderr).strip()[-300:]}")
    return outcome


def unregister_removed(fed: Federation, home: Path, nodes: list[dict[str, Any]]) -> list[str]:
    """Unregister every node whose key is on the federation's list of removed keys; returns those keys' labels."""
    done = []
    for label, node in bound_nodes(fed.removed_keys(), nodes).items():
        if node is None or node["status"] == "unregistered":
            continue
        result = flwr(home, "supernode", "unregister", node["node-id"], CONNECTION)
        if result.returncode != 0:
            said = (result.stdout + result.stderr).strip()[-300:]
            raise MedfedError(f"unregistering removed site '{label}' (node {node['node-id']}) failed: {said}")
        done.append(label)
    return done


def submit(
    home: Path, study: StudyConfig, stream: bool, initial: Path | None = None, app: Path = PROJECT_ROOT
) -> subprocess.CompletedProcess | subprocess.Popen:
    """Start the study as a Flower run of `app` (this medfed); the whole study travels as one run-config value, and
    where its `initial` model file was found as another."""
    config = home / f"study-{study.name}.toml"
    lines = [f"study-json = {json.dumps(study.to_json())}"]
    if initial is not None:
        lines.append(f"{INITIAL_MODEL_FILE} = {json.dumps(str(initial.resolve()))}")
    config.write_text("\n".join(lines) + "\n")
    args = ["run", str(app.resolve()), CONNECTION, "--run-config", str(config.resolve())]
    if stream:
        return subprocess.Popen(**flwr_process(home, *args, "--stream"))
    result = flwr(home, *args)
    if result.returncode != 0:
        raise MedfedError(f"submitting study '{study.name}' failed: {(result.stdout + result.stderr).strip()[-400:]}")
    return result


def list_runs(home: Path) -> list[dict[str, Any]]:
    """The SuperLink's runs as `flwr ls --format json` gives them (run-id, status, status-details, times)."""
    result = flwr(home, "ls", CONNECTION, "--format", "json")
    try:
        return list(json.loads(result.stdout)["runs"])
    except (ValueError, KeyError) as exc:
        said = (result.stdout + result.stderr).strip()[-300:]
        raise MedfedError(f"the SuperLink did not list its runs: {said}") from exc


def list_nodes(home: Path) -> list[dict[str, Any]]:
    """The SuperLink's SuperNodes with their public keys (PEM), which `flwr supernode ls` does not print."""
    from flwr.cli.flower_config import read_superlink_connection  # Flower's CLI client: only this command needs it
    from flwr.cli.utils import init_http_client_from_connection
    from flwr.proto.control_pb2 import ListNodesRequest

    previous = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(home)
    client = None
    try:  # Flower's client prints which connection it uses; that line is not ours to show
        with contextlib.redirect_stdout(io.StringIO()):
            client = init_http_client_from_connection(read_superlink_connection(CONNECTION))
            nodes = client.ListNodes(ListNodesRequest()).nodes_info
    except Exception as exc:  # any failure of Flower's client (unreachable, TLS, refused) reads the same here
        raise MedfedError(f"the SuperLink did not list its sites: {exc}") from exc
    finally:
        if client is not None:
            client.close()
        if previous is None:
            os.environ.pop("FLWR_HOME", None)
        else:
            os.environ["FLWR_HOME"] = previous
    return [
        {
            "node-id": str(n.node_id),
            "status": n.status,
            "public-key": n.public_key.decode(),
            "online-at": n.last_activated_at or None,
            "offline-at": n.last_deactivated_at or None,
        }
        for n in nodes
    ]
