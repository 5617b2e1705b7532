"""Real federation on loopback, no mocks of Flower: SuperLink and SuperNodes over TLS with site authentication.

One federation of four hospitals serves every test: north, south and east accept tabular studies; west's policy
accepts imaging only. Every process is started in its own group and killed by PID at the end.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time

import pytest

from server.deployment import CONNECTION, flower_home, flwr
from server.provision import add_site, provision
from shared.config import PrivacyConfig
from shared.tasks import get_task
from simulations.loopback import Loopback, wait_history

SITES = ["north", "south", "east", "west"]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    lb = Loopback(tmp_path_factory.mktemp("loopback"), SITES)
    try:
        lb.start_server()
        for i, name in enumerate(SITES):
            policy = 'tasks = ["imaging"]\nmax-epsilon = 8.0\nmin-sites = 2\n' if name == "west" else ""
            lb.start_site(name, lb.site_config(name, lb.data[i % 3], policy))
        for name in SITES:
            lb.wait_log(name, "SuperNode ID", 90)
        yield lb
    finally:
        lb.close()


def study(name: str, rounds: int, round_timeout: float = 120.0):
    base = get_task("tabular").demo_study()
    federation = dataclasses.replace(base.federation, rounds=rounds, round_timeout=round_timeout, connect_timeout=60)
    privacy = PrivacyConfig(mode="local", epsilon=3.0)  # the sites' policy caps ε at 8 and requires local DP
    return dataclasses.replace(base, name=name, federation=federation, privacy=privacy)


def rounds_trained(history: dict) -> list[int]:
    return [r["round"] for r in history["metrics"] if r["site"] == "weighted" and r["kind"] == "train"]


def test_two_round_study_over_tls_with_authentication_and_a_policy_refusal(loopback):
    s = study("tls-study", rounds=2)
    loopback.submit(s, loopback.root)
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 400)
    assert history["status"] == "completed", history["events"]
    assert rounds_trained(history) == [1, 2]
    trained = {r["site"] for r in history["metrics"] if r["kind"] == "train" and r["site"] != "weighted"}
    assert trained == {"north", "south", "east"}
    refusals = [e for e in history["events"] if e["site"] == "west"]
    assert refusals and all("task 'tabular' is not among this site's accepted tasks" in e["reason"] for e in refusals)
    assert "refuses study 'tls-study'" in (loopback.root / "west.log").read_text()  # in the site's own log


def test_unregistered_site_key_is_refused(loopback):
    kit = add_site(loopback.fed.root, "intruder")  # provisioned, but its key was never registered
    proc = loopback.start_site("intruder", loopback.site_config("intruder", loopback.data[0], kit=kit))
    assert proc.wait(timeout=120) != 0
    assert "SuperNode ID" not in (loopback.root / "intruder.log").read_text()


def test_site_with_another_federations_ca_cannot_connect(loopback, tmp_path):
    other = provision(tmp_path / "other", ["127.0.0.1"], ["stranger"], loopback.port)
    config = loopback.site_config("stranger", loopback.data[0], kit=other.site("stranger"))
    loopback.start_site("stranger", config)
    time.sleep(20)
    log = (loopback.root / "stranger.log").read_text()
    assert "SuperNode ID" not in log
    home = flower_home(loopback.fed, f"127.0.0.1:{loopback.port}")
    assert len(json.loads(flwr(home, "supernode", "ls", CONNECTION, "--format", "json").stdout)["nodes"]) == 4
    loopback.kill("stranger")


def test_server_killed_after_round_one_resumes_and_a_dead_site_does_not_hang_it(loopback):
    s = study("resumed-study", rounds=2, round_timeout=90)
    loopback.submit(s, loopback.root)
    wait_history(lambda: loopback.history(s), lambda h: 1 in rounds_trained(h), 400)
    loopback.kill("server", signal.SIGKILL)
    loopback.start_server()
    for name in ("north", "south", "east"):  # the agents reconnect by themselves
        loopback.wait_log(name, "SuperNode ID", 90)
    loopback.submit(s, loopback.root)
    wait_history(lambda: loopback.history(s), lambda h: any(e["event"] == "resumed" for e in h["events"]), 120)
    loopback.kill("east")  # a hospital goes away mid-study
    history = wait_history(lambda: loopback.history(s), lambda h: h["status"] != "running", 500)
    assert history["status"] == "completed", history["events"]
    assert rounds_trained(history) == [1, 2]  # no round lost, none counted twice
    resumed = [e for e in history["events"] if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["round"] >= 1
    assert any(e["site"] == "east" and e["event"] == "no-reply" for e in history["events"])
