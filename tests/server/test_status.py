"""`medfed-server status` from canned SuperLink listings: site names bound by key, true study statuses, 80 columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from flwr.supercore.primitives.asymmetric import public_key_to_bytes

from server import deployment
from server.provision import provision, remove_site
from server.status import format_status, removed_states, site_states, study_runs
from shared.errors import MedfedError

STOPPED = "stopped: round 1: only 0 usable update(s), federation.min-sites is 3"


def node(fed, site: str | None, node_id: str, status: str, **times: str) -> dict:
    """A node as `list_nodes` returns it: the public key in Flower's PEM form."""
    if site is None:
        key = ec.generate_private_key(ec.SECP384R1()).public_key()
    else:
        key = load_ssh_public_key((fed.server / "site-keys" / f"{site}.pub").read_bytes())
    return {"node-id": node_id, "status": status, "public-key": public_key_to_bytes(key).decode(), **times}


def study_folder(fed, name: str, runs: list[str], status: str, rounds: int) -> None:
    folder = fed.server / "outputs" / f"{name}-0123456789ab"
    folder.mkdir(parents=True)
    (folder / "runs.json").write_text(json.dumps(runs))
    timings = [{"round": r} for r in range(1, rounds + 1)]
    history = {"status": status, "metrics": [], "events": [], "timings": timings}
    (folder / "history.json").write_text(json.dumps(history))


def run(run_id: str, status: str, details: str = "") -> dict:
    return {"run-id": run_id, "status": status, "status-details": details}


def test_sites_are_named_by_their_keys_with_state_and_last_contact(tmp_path):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north", "south", "east", "west"])
    nodes = [
        node(fed, "north", "11", "online", **{"online-at": "2026-01-05T10:00:03.123+00:00"}),
        node(fed, "south", "12", "offline", **{"offline-at": "2026-01-05T09:58:00"}),
        node(fed, "east", "13", "registered"),
        node(fed, None, "14", "online", **{"online-at": "2026-01-05T10:00:00"}),  # a key no site was provisioned with
    ]
    states = {s.name: s for s in site_states(fed, nodes)}
    assert list(states) == ["east", "north", "south", "west"]
    assert (states["north"].state, states["north"].since, states["north"].node_id) == (
        "online",
        "since 2026-01-05 10:00:03 UTC",
        "11",
    )
    assert (states["south"].state, states["south"].since) == ("offline", "last contact 2026-01-05 09:58:00 UTC")
    assert states["east"].state == "registered, never connected"
    assert states["west"].state.startswith("not registered")


def test_each_run_shows_its_studys_true_status_readably_at_80_columns(tmp_path):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north"])
    study_folder(fed, "resumed", ["101", "102"], "completed", 20)
    study_folder(fed, "too-few", ["103"], STOPPED, 1)
    study_folder(fed, "ongoing", ["104"], "running", 2)
    study_folder(fed, "halted", ["105"], "running", 3)
    study_folder(fed, "retried", ["108", "109"], "completed", 5)  # 108 stopped below min-sites; 109 resumed it
    listing = [
        run("101", "finished:stopped"),
        run("102", "finished:completed"),
        run("103", "finished:completed"),
        run("104", "running"),
        run("105", "finished:stopped", "N/A"),  # what Flower lists for a run stopped with `flwr stop`
        run("106", "finished:failed", "ServerApp exception"),
        run("107", "running"),  # just started: its ServerApp has not recorded it in a study folder yet
        run("108", "finished:completed"),
        run("109", "finished:completed"),
    ]
    runs = {r.run_id: r for r in study_runs(fed, listing)}
    assert (runs["101"].study, runs["101"].status) == ("resumed", "stopped by the operator; resumed by run 102")
    assert runs["102"].status == "completed"
    assert runs["103"].status == STOPPED  # Flower says finished:completed; the study stopped below min-sites
    assert runs["104"].status == "running"
    assert runs["105"].status == "stopped by the operator after round 3; resubmit the study to resume"
    assert runs["106"].status.startswith("finished:failed (ServerApp exception)")
    assert runs["106"].status.endswith("(no study folder in the server kit)")
    assert (runs["107"].study, runs["107"].status) == ("?", "running (not yet in a study folder)")
    assert runs["108"].status == "ended; resumed by run 109"  # not Flower's 'finished:completed'
    text = format_status(site_states(fed, []), list(runs.values()))
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert "run 103  too-few: stopped: round 1: only 0 usable update(s)," in text
    assert "federation.min-sites is 3" in text  # wrapped, not cut
    assert text.splitlines()[1].split() == ["north", "not", "registered", "(medfed-server", "register)"]


def test_starting_again_registers_only_the_keys_the_superlink_does_not_hold(tmp_path, monkeypatch):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north", "south", "east", "west"])
    listing = [
        node(fed, "north", "11", "online"),
        node(fed, "south", "12", "offline"),
        node(fed, "east", "13", "unregistered"),
    ]
    monkeypatch.setattr(deployment, "list_nodes", lambda home: listing)
    called: list[str] = []

    def flwr(home, *args):
        called.append(args[2])
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(deployment, "flwr", flwr)
    outcome = deployment.register_sites(fed, tmp_path / "home")
    assert outcome == {
        "east": deployment.UNREGISTERED,  # unregistered by hand with `flwr`: Flower never takes the key again
        "north": "already registered",
        "south": "already registered",
        "west": "registered",
    }
    assert [Path(path).name for path in called] == ["west.pub"]  # one `flwr` process per new key only


def test_a_site_removed_while_the_superlink_was_down_is_unregistered_when_it_starts(tmp_path, monkeypatch):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north", "south"])
    listing = [node(fed, "north", "11", "online", **{"online-at": None}), node(fed, "south", "12", "online")]
    label = remove_site(fed.root, "south").stem
    assert [(s.name, s.state) for s in removed_states(fed, listing)] == [
        (label, "STILL REGISTERED: run medfed-server register")
    ]
    monkeypatch.setattr(deployment, "list_nodes", lambda home: listing)
    called: list[tuple[str, ...]] = []

    def flwr(home, *args):
        called.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(deployment, "flwr", flwr)
    outcome = deployment.register_sites(fed, tmp_path / "home")
    assert outcome == {f"{label} (removed)": "unregistered", "north": "already registered"}
    assert called == [("supernode", "unregister", "12", deployment.CONNECTION)]  # the removed key's node, only
    listing[1]["status"] = "unregistered"
    removed = removed_states(fed, listing)
    assert [(s.name, s.state) for s in removed] == [(label, "unregistered")]
    text = format_status(site_states(fed, listing), [], removed)
    assert text.splitlines()[:4] == [
        "sites (1 provisioned):",
        "  north  online, since ?",
        "removed sites (1, by key fingerprint):",
        f"  {label}  unregistered",
    ]


def test_a_failed_unregistration_is_an_error_naming_the_removed_site(tmp_path, monkeypatch):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north"])
    listing = [node(fed, "north", "11", "online")]
    label = remove_site(fed.root, "north").stem
    monkeypatch.setattr(deployment, "flwr", lambda home, *a: subprocess.CompletedProcess(a, 1, "", "permission denied"))
    with pytest.raises(MedfedError, match=rf"unregistering removed site '{label}' \(node 11\) failed: permission"):
        deployment.unregister_removed(fed, tmp_path / "home", listing)


def test_a_superlink_that_does_not_answer_is_reported_not_waited_on_forever(tmp_path, monkeypatch):
    hang = {"args": [sys.executable, "-c", "import time; time.sleep(30)"], "env": None, "cwd": tmp_path}
    monkeypatch.setattr(deployment, "flwr_process", lambda home, *args: hang)
    with pytest.raises(MedfedError, match=r"`flwr supernode unregister` got no answer from the SuperLink within 1 s"):
        deployment.flwr(tmp_path, "supernode", "unregister", "12", deployment.CONNECTION, timeout=1)
