"""Real federation on loopback, no mocks of Flower: SuperLink and SuperNodes over TLS with site authentication.

One federation of four hospitals serves every test: north, south and east accept studies up to ε = 8; west's
policy caps ε at 2. Studies run with secure aggregation (SecAgg+), a federation's default. Every process is started
in its own group and killed by PID at the end.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from client.agent import SERVER_ENDED
from client.site import SiteConfig
from client.sitefile import load_site_file
from client.worker import PACKAGES
from server.deployment import CONNECTION, PROJECT_ROOT, flower_home, flwr, submit
from server.outputs import recorded_runs
from server.provision import add_site, provision
from shared.config import PrivacyConfig
from shared.privacy.journal import verify
from shared.tasks import get_task
from simulations.loopback import BIN, Loopback, wait_history
from tests.processes import child_pids

SITES = ["north", "south", "east", "west"]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    lb = Loopback(tmp_path_factory.mktemp("loopback"), SITES)
    try:
        lb.start_server()
        for i, name in enumerate(SITES):
            policy = "max-epsilon = 2.0\nmin-sites = 2\n" if name == "west" else ""
            lb.start_site(name, lb.site_config(name, lb.data[i % 3], policy))
        for name in SITES:
            lb.wait_log(name, "SuperNode ID", 90)
        yield lb
    finally:
        lb.close()


def study(name: str, rounds: int, epsilon: float, round_timeout: float = 120.0):
    base = get_task("tabular").demo_study()
    federation = dataclasses.replace(
        base.federation, rounds=rounds, min_sites=3, round_timeout=round_timeout, connect_timeout=60
    )
    privacy = PrivacyConfig(mode="local", epsilon=epsilon)  # the sites' policies cap ε and require local DP
    return dataclasses.replace(base, name=name, federation=federation, privacy=privacy)


def story(history: dict) -> str:
    """A study's events and round timings, a line each: pytest cuts a long list short, but prints a string whole."""
    return "\n".join(json.dumps(line) for line in history["events"] + history["timings"])


def rounds_trained(history: dict) -> list[int]:
    return [r["round"] for r in history["metrics"] if r["site"] == "weighted" and r["kind"] == "train"]


def test_a_study_over_tls_with_authentication_and_a_policy_refusal(loopback):
    s = study("tls-study", rounds=1, epsilon=3.0)  # a second round is the resume test's
    (loopback.root / "tls-study.json").write_text(s.to_json())
    streamed = medfed_server(loopback, "submit", "--study", "tls-study.json", timeout=600)  # streams to its end
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 60)
    assert history["status"] == "completed", story(history)
    assert streamed.returncode == 0, streamed.stdout[-3000:]
    summary = streamed.stdout[streamed.stdout.index("study 'tls-study' completed") :]
    assert f"outputs: {loopback.history(s).parent}" in summary
    assert re.search(r"(?m)site\s+accuracy\s+roc-auc\s+num-examples\s+ε spent$", summary), summary
    assert all(re.search(rf"(?m){name}\s+[01]\.\d{{3}}\s", summary) for name in ("north", "south", "east", "weighted"))
    assert re.search(r"(?m)^.*west refused \(round 1\): .*above this site's cap of 2\.0", summary), summary
    assert rounds_trained(history) == [1]
    assert [t["accepted"] for t in history["timings"]] == [3]  # the round's model is the unmasked sum of 3
    trained = {r["site"] for r in history["metrics"] if r["kind"] == "train" and r["site"] != "weighted"}
    assert trained == {"north", "south", "east"}
    refusals = [e for e in history["events"] if e["site"] == "west"]
    assert refusals and all("above this site's cap of 2.0" in e["reason"] for e in refusals)
    assert any("(secure aggregation, setup)" in e["reason"] for e in refusals)  # before it joined the key exchange
    assert "asks for ε = 3.0, above this site's cap" in loopback.log("west")  # its own log


def test_a_worker_killed_mid_round_is_restarted_and_its_message_answered_with_no_journal_entry_lost(loopback):
    """kill -9 of north's site worker alone, while it holds round 1's message: the agent starts a new worker, which
    answers that message saying what happened; the study goes on without waiting for Flower's heartbeat limit."""
    # Second in this module, while all four sites run; ε 0.3 leaves west (lifetime ε 2) room for the resume test.
    s = study("worker-killed", rounds=1, epsilon=0.3, round_timeout=60)
    s = dataclasses.replace(s, federation=dataclasses.replace(s.federation, secure_aggregation="off", min_sites=2))
    kit = loopback.fed.site("north")
    loopback.submit(s, loopback.root)
    wait_until(lambda: loopback.busy("north"), 120)  # the worker holds the message
    os.kill(worker_pid(loopback, "north"), signal.SIGKILL)
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 120)
    assert history["status"] == "completed", story(history)
    assert rounds_trained(history) == [1]
    stopped = [e for e in history["events"] if e["site"] == "north" and e["round"] == 1]
    assert stopped and "its worker stopped while handling this message" in stopped[0]["reason"], stopped
    served = [(r["kind"], r["round"]) for r in history["metrics"] if r["site"] == "north"]
    assert served == [("eval", 1)]  # the new worker served the next message, the final evaluation
    log = loopback.log("north")
    assert "the site worker exited with code -9; restarting it" in log
    assert "answered the train message the previous worker stopped on" in log
    site = SiteConfig.from_site_file(load_site_file(kit / "site.toml"))
    verdict = verify(site.ledger_files(), "north")  # whether or not round 1's entry was written before the kill
    assert verdict.problem == "", verdict.problem


def worker_pid(loopback: Loopback, site: str) -> int:
    """The PID of the site's worker: the agent's child running `medfed-site worker`."""
    agent = loopback.processes[site].pid
    return next(p for p in child_pids(agent) if b"\0worker\0" in Path(f"/proc/{p}/cmdline").read_bytes())


def test_unregistered_site_key_is_refused(loopback):
    kit = add_site(loopback.fed.root, "intruder")  # provisioned, but its key was never registered
    loopback.start_site("intruder", loopback.site_config("intruder", loopback.data[0], kit=kit))
    loopback.wait_log("intruder", "refused this site's node", 90)  # tried again for a while (a registration may come)
    assert "SuperNode ID" not in loopback.log("intruder")
    loopback.kill("intruder")


def test_site_with_another_federations_ca_cannot_connect(loopback, tmp_path):
    other = provision(tmp_path / "other", ["127.0.0.1"], ["stranger"], loopback.port)
    config = loopback.site_config("stranger", loopback.data[0], kit=other.site("stranger"))
    loopback.start_site("stranger", config)
    deadline = time.monotonic() + 90
    while "SSL/TLS handshake error" not in loopback.log("stranger"):  # Flower's words for the refused certificate
        assert time.monotonic() < deadline, loopback.log("stranger")[-3000:]
        time.sleep(0.3)
    assert "SuperNode ID" not in loopback.log("stranger")
    home = flower_home(loopback.fed, f"127.0.0.1:{loopback.port}")
    assert len(json.loads(flwr(home, "supernode", "ls", CONNECTION, "--format", "json").stdout)["nodes"]) == 4
    loopback.kill("stranger")


def test_status_shows_a_running_study_and_stop_ends_it(loopback):
    run_id = submit_run(loopback, study("stopped-study", rounds=20, epsilon=3.0))
    try:
        status = medfed_server(loopback, "status")
        assert status.returncode == 0 and f"run {run_id}  stopped-study: running" in status.stdout, status.stdout
        assert status.stdout.count("online") == 4  # the four hospitals' agents, by their provisioned names
        assert all(re.search(rf"(?m)^  {name}\s+online, since ", status.stdout) for name in SITES), status.stdout
        assert re.search(r"(?m)^  intruder\s+not registered", status.stdout), status.stdout  # provisioned only
        assert all(len(line) <= 80 for line in status.stdout.splitlines())
    finally:  # a failed check must not leave a 20-round study holding the sites through the next tests
        stopped = medfed_server(loopback, "stop", run_id)
    assert stopped.returncode == 0, stopped.stdout
    wait_until(lambda: any(str(r["run-id"]) == run_id and "stopped" in r["status"] for r in runs(loopback)), 60)
    after = " ".join(medfed_server(loopback, "status").stdout.split())  # a long line wraps at 80 columns
    assert re.search(rf"run {run_id} stopped-study: stopped by the operator after round \d+", after), after


def test_a_removed_site_is_cut_off_at_once_and_rejoins_only_with_a_new_key(loopback):
    hospital = shutil.copytree(add_site(loopback.fed.root, "leaver"), loopback.root / "leaver-kit")  # handed over
    assert medfed_server(loopback, "register").returncode == 0
    loopback.start_site("leaver", loopback.site_config("leaver", loopback.data[0], kit=hospital))
    loopback.wait_log("leaver", "SuperNode ID", 90)
    removed = medfed_server(loopback, "remove-site", "leaver")
    assert removed.returncode == 0 and "its node (key leaver-" in removed.stdout and "is unregistered" in removed.stdout
    agent = loopback.processes["leaver"]
    assert agent.wait(timeout=120) == SERVER_ENDED  # at its next heartbeat, not silently with success
    assert "removed this site from the federation" in loopback.log("leaver")
    status = medfed_server(loopback, "status").stdout
    assert re.search(r"(?m)^  leaver-[0-9a-f]{16}\s+unregistered$", status) and "  leaver  " not in status, status
    audit = [json.loads(line) for line in (loopback.fed.server / "audit.jsonl").read_text().splitlines()]
    assert [e["action"] for e in audit][:2] == ["start", "register"]  # what the coordinator did, in order
    assert {"submit", "stop", "remove-site", "unregister"} <= {e["action"] for e in audit}
    loopback.processes.pop("leaver")
    loopback.start_site("leaver", loopback.site_config("leaver", loopback.data[0], kit=hospital))  # its old key
    loopback.wait_log("leaver", "refused this site's node", 90)
    loopback.kill("leaver")
    add_site(loopback.fed.root, "leaver")  # a new key, which the coordinator registers
    assert "site 'leaver': registered" in medfed_server(loopback, "register").stdout
    assert re.search(r"(?m)^  leaver\s+registered, never connected$", medfed_server(loopback, "status").stdout)


def test_a_site_requiring_approval_trains_the_study_it_approved_as_the_server_sends_it(loopback):
    """The digest the site approves from the study file is the one the server's messages carry (were it not, north
    would refuse: tests/client/test_approvals.py has the refusals)."""
    toml = loopback.fed.site("north") / "site.toml"
    original = toml.read_text()
    approved = study("reviewed", rounds=1, epsilon=0.3, round_timeout=60)  # west (lifetime cap 2) keeps room
    (loopback.root / "reviewed.json").write_text(approved.to_json())
    try:  # the agent reads its site.toml at each message: the policy holds from the next one, no restart
        toml.write_text(original.replace("require-approval = false", "require-approval = true"))
        command = [str(BIN / "medfed-site"), "approve", "--config", str(toml), "--study", "reviewed.json"]
        said = subprocess.run(command, capture_output=True, text=True, env=loopback.env, cwd=loopback.root)
        assert said.returncode == 0 and approved.digest() in said.stdout, said.stdout + said.stderr
        idle(loopback)
        loopback.submit(approved, loopback.root)
        history = wait_history(lambda: loopback.history(approved), lambda h: h["status"] != "running", 300)
        assert history["status"] == "completed" and [t["accepted"] for t in history["timings"]] == [4], story(history)
        assert not [e for e in history["events"] if e["site"] == "north"], story(history)
    finally:  # the later tests' north admits every study its policy allows
        toml.write_text(original)


def medfed_server(loopback: Loopback, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A `medfed-server` command as the README writes it: from the folder holding `federation`, a relative path."""
    command = [str(BIN / "medfed-server"), args[0], "--federation", "federation", *args[1:]]
    return subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=loopback.env,
        timeout=timeout,
        cwd=loopback.root,
    )


def test_a_server_shipping_a_modified_app_is_refused_by_every_site(loopback, tmp_path):
    """The server's bundle skips the sites' policy and cap: no site runs it, each says why in its own log."""
    app = tmp_path / "app"
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, app / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", app)
    with (app / "client" / "admission.py").open("a") as admission:
        admission.write("\n\ndef admit(*args, **kwargs):\n    return None  # every study admitted, whatever the cap\n")
    s = study("modified-app", rounds=1, epsilon=3.0, round_timeout=60)  # above west's cap of 2
    idle(loopback)  # each site must answer within the 60 s, not finish the stopped study's message first
    submit(flower_home(loopback.fed, f"127.0.0.1:{loopback.port}"), s, stream=False, app=app)
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 300)
    assert history["status"].startswith("stopped: round 1: only 0 usable update(s)"), story(history)
    refusals = {e["site"]: e["reason"] for e in history["events"] if e["event"] == "refused"}
    assert set(refusals) == set(SITES), story(history)
    assert all("runs only its own installed medfed" in reason for reason in refusals.values())
    for name in SITES:
        assert "differs from this site's medfed 0.1.0 in 1 file(s): client/admission.py" in loopback.log(name)


def test_server_killed_after_round_one_resumes_and_secure_aggregation_survives_a_site_dying_mid_round(loopback):
    s = study("resumed-study", rounds=2, epsilon=1.5, round_timeout=40)  # west accepts this one: four sites
    # Every site must answer within this study's 40 s: a site still finishing a message of an earlier test's study
    # (one that study's stop left behind) would miss a stage on a slow machine, and never get the message awaited below.
    idle(loopback)
    loopback.submit(s, loopback.root)
    wait_history(lambda: loopback.history(s), lambda h: 1 in rounds_trained(h), 400)
    loopback.restart_server()  # SIGKILL; the agents reconnect by themselves
    run_id = submit_run(loopback, s)
    # A hospital goes away mid-round: once it has the resumed run's third SecAgg+ message of round 2 (the one that
    # trains), after the key exchange, so the others' vectors hold masks that only its key shares can remove.
    wait_until(lambda: train_messages(loopback, "east", run_id, 2) >= 3, 300)
    loopback.kill("east")
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 500)
    assert history["status"] == "completed", story(history)
    assert rounds_trained(history) == [1, 2]  # no round lost, none counted twice
    assert history["timings"][-1]["accepted"] == 3  # round 2 is the unmasked sum of the three that stayed
    resumed = [e for e in history["events"] if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["round"] >= 1
    # Its reply is missing, or the SuperLink answered for it once its heartbeat ran out: either way, named as east.
    gone = [e for e in history["events"] if e["site"] == "east" and e["round"] == 2]
    assert any(re.search(r"(collect-masked-vectors|unmask)", e["reason"]) for e in gone), gone


def idle(loopback: Loopback) -> None:
    """Wait until every running site is idle (an earlier test's study may have left one a message to finish)."""
    wait_until(lambda: all(loopback.idle(name) for name in SITES if name in loopback.processes), 300)


def runs(loopback: Loopback) -> list[dict]:
    """The SuperLink's runs, as `flwr ls` lists them (retried while a restarted SuperLink is not answering yet)."""
    home = flower_home(loopback.fed, f"127.0.0.1:{loopback.port}")
    listing: dict = {}

    def listed() -> bool:
        listing.update(json.loads(flwr(home, "ls", CONNECTION, "--format", "json").stdout or "{}"))
        return "runs" in listing

    wait_until(listed, 60)
    return listing["runs"]


def submit_run(loopback: Loopback, s) -> str:
    """Submit the study; the id of the run it starts, once running and recorded in the study's folder (a killed
    server's run may still be listed)."""
    before = {r["run-id"] for r in runs(loopback)}
    loopback.submit(s, loopback.root)
    new = lambda: [r for r in runs(loopback) if r["run-id"] not in before and r["status"] == "running"]  # noqa: E731
    wait_until(lambda: bool(new()), 120)
    run_id = str(new()[0]["run-id"])
    # Flower lists the run as running before its ServerApp records it in the study's folder.
    wait_until(lambda: run_id in recorded_runs(loopback.history(s).parent), 120)
    return run_id


def train_messages(loopback: Loopback, site: str, run_id: str, rnd: int) -> int:
    """How many train messages of this run's round the site's SuperNode has received (SecAgg+ sends four)."""
    lines = loopback.log(site).splitlines()
    header = f"[RUN {run_id}, ROUND {rnd}]"
    return sum(header in a and "Receiving: train message" in b for a, b in itertools.pairwise(lines))


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
