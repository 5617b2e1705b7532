"""`medfed-server status`: the provisioned sites bound to the SuperLink's nodes by key, and each study's true status.

Plain lines, wrapped at 80 columns, so that the report reads the same in a terminal, a pipe or a log.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.certificates import validity
from server.outputs import RUNS, recorded_runs
from server.provision import Federation
from shared.identity import load_public_key

WIDTH = 80
NEVER = {"registered": "registered, never connected", "unregistered": "unregistered: needs a new key (remove-site)"}
LIVE = ("running", "starting", "pending")  # Flower's words for a run not yet finished
ENDED = {
    "finished:stopped": "stopped by the operator",
    "finished:failed": "the ServerApp failed",
    "finished:completed": "ended",
}


@dataclass(frozen=True)
class SiteState:
    """One provisioned site as the SuperLink sees it."""

    name: str
    state: str  # online | offline | registered, never connected | not registered
    since: str = ""  # online: since when; offline: last contact
    node_id: str = ""


@dataclass(frozen=True)
class StudyRun:
    """One Flower run of a study and the study's own account of how it stands."""

    run_id: str
    study: str
    status: str


def bound_nodes(keys: dict[str, Path], nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Each key file's node: the one registered with that public key (nodes as `list_nodes` gives them)."""
    by_key = {_key(node["public-key"]): node for node in nodes if node.get("public-key")}
    return {name: by_key.get(_pem(load_public_key(path))) for name, path in keys.items()}


def site_states(fed: Federation, nodes: list[dict[str, Any]]) -> list[SiteState]:
    """Each provisioned site bound to its node, and how the SuperLink sees it."""
    states = []
    for name, node in bound_nodes(fed.site_keys(), nodes).items():
        if node is None:
            states.append(SiteState(name, "not registered (medfed-server register)"))
        elif node["status"] == "online":
            states.append(SiteState(name, "online", f"since {_time(node['online-at'])}", node["node-id"]))
        elif node["status"] == "offline":
            states.append(SiteState(name, "offline", f"last contact {_time(node['offline-at'])}", node["node-id"]))
        else:
            states.append(SiteState(name, NEVER.get(node["status"], node["status"]), node_id=node["node-id"]))
    return states


def removed_states(fed: Federation, nodes: list[dict[str, Any]]) -> list[SiteState]:
    """Each removed site's key (`<site>-<fingerprint>`) and whether the SuperLink still lets its node in."""
    states = []
    for label, node in bound_nodes(fed.removed_keys(), nodes).items():
        if node is None:
            states.append(SiteState(label, "not registered"))
        elif node["status"] == "unregistered":
            states.append(SiteState(label, "unregistered", node_id=node["node-id"]))
        else:  # removed while the SuperLink was not reached
            states.append(SiteState(label, "STILL REGISTERED: run medfed-server register", node_id=node["node-id"]))
    return states


def certificate_lines(fed: Federation) -> list[tuple[str, int]]:
    """The server certificate's and the CA's validity, each as a line and the days left."""
    return [
        validity(fed.server / "server.pem", "server certificate", "renew it: medfed-server renew-certificate"),
        validity(fed.server / "ca.crt", "federation CA", "a new CA needs a new ca.crt in every kit: provision again"),
    ]


def study_runs(fed: Federation, runs: list[dict[str, Any]]) -> list[StudyRun]:
    """Each run (as `flwr ls --format json` lists it) with its study's status from the study's history.json.

    A run whose ServerApp was stopped or killed never wrote its end, so Flower's word and the last saved round
    complete it; a run a later run resumed says so. A study writing outside the server kit is shown as Flower sees it.
    """
    folders = {}  # run id -> (study folder, the last run that worked on it)
    for path in fed.server.glob(f"*/*/{RUNS}"):
        ids = recorded_runs(path.parent)
        folders.update({run_id: (path.parent, ids[-1]) for run_id in ids})
    out = []
    for run in runs:
        run_id, flower = str(run["run-id"]), run["status"]
        details = f" ({run['status-details']})" if run.get("status-details") not in (None, "", "N/A") else ""
        if run_id not in folders:
            where = "not yet in a study folder" if flower in LIVE else "no study folder in the server kit"
            out.append(StudyRun(run_id, "?", f"{flower}{details} ({where})"))
            continue
        folder, last = folders[run_id]
        history = _history(folder)
        study = folder.name.rsplit("-", 1)[0]
        if last != run_id:
            status = f"{_ended(flower)}; resumed by run {last}"
        elif history.get("status", "running") != "running" or flower in LIVE:
            status = history.get("status", flower)
        else:
            status = f"{_ended(flower)}{details} after round {_rounds(history)}; resubmit the study to resume"
        out.append(StudyRun(run_id, study, status))
    return out


def format_status(
    sites: list[SiteState],
    runs: list[StudyRun],
    removed: Sequence[SiteState] = (),
    certificates: Sequence[str] = (),
) -> str:
    """The report: one line per site (provisioned, then removed), one block per run, long statuses wrapped; then the
    certificates' validity."""
    width = max((len(s.name) for s in sites), default=4)
    lines = [f"sites ({len(sites)} provisioned):"]
    lines += [f"  {s.name:<{width}}  {s.state}" + (f", {s.since}" if s.since else "") for s in sites]
    if removed:
        width = max(len(s.name) for s in removed)
        lines.append(f"removed sites ({len(removed)}, by key fingerprint):")
        lines += [f"  {s.name:<{width}}  {s.state}" for s in removed]
    lines.append(f"studies ({len(runs)} runs):" if runs else "studies: none submitted")
    for run in runs:
        head = f"  run {run.run_id}  {run.study}: "
        lines += textwrap.wrap(head + run.status, WIDTH, subsequent_indent=" " * 6, break_on_hyphens=False)
    for line in certificates:
        lines += textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)


def _key(text: str) -> bytes:
    """A node's public key as the SuperLink lists it (PEM, or an OpenSSH line), in `_pem`'s one form."""
    data = text.strip().encode()
    pem = data.startswith(b"-----")
    return _pem(serialization.load_pem_public_key(data) if pem else serialization.load_ssh_public_key(data))


def _pem(key: PublicKeyTypes) -> bytes:
    """A public key in one form: PEM SubjectPublicKeyInfo."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _time(stamp: str | None) -> str:
    """An ISO time to the second, in UTC as Flower records it."""
    return (stamp or "?").replace("T", " ")[:19] + (" UTC" if stamp else "")


def _history(folder: Path) -> dict[str, Any]:
    path = folder / "history.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _rounds(history: dict[str, Any]) -> int:
    return max((t["round"] for t in history.get("timings", [])), default=0)


def _ended(flower: str) -> str:
    """Flower's `finished:...` statuses as words."""
    return ENDED.get(flower, flower)
