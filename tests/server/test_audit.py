"""The coordinator's audit log: every action that changes the federation, appended as one JSON line."""

from __future__ import annotations

import getpass
import json

import pytest
from typer.testing import CliRunner

from server.audit import AUDIT_LOG, record
from server.cli import cli
from server.provision import Federation, key_fingerprint
from shared.errors import MedfedError
from simulations.loopback import free_port


def entries(fed: Federation) -> list[dict]:
    return [json.loads(line) for line in (fed.server / AUDIT_LOG).read_text().splitlines()]


def test_each_operator_action_is_appended_with_who_when_and_what(tmp_path):
    root = tmp_path / "federation"
    invoke = lambda *args: CliRunner().invoke(cli, list(args))  # noqa: E731
    port = str(free_port())  # no SuperLink there: remove-site records the removal, then says it is not unregistered
    assert (
        invoke("provision", "--out", str(root), "--host", "127.0.0.1", "--site", "north", "--port", port).exit_code == 0
    )
    fed = Federation(root)
    assert invoke("add-site", "--federation", str(root), "south").exit_code == 0
    south = key_fingerprint(fed.site_keys()["south"])
    assert invoke("remove-site", "--federation", str(root), "south").exit_code == 1
    assert invoke("renew-certificate", "--federation", str(root)).exit_code == 0
    log = entries(fed)
    assert [e["action"] for e in log] == ["provision", "add-site", "remove-site", "renew-certificate"]
    assert all(e["user"] == getpass.getuser() and e["at"].endswith("+00:00") for e in log)
    assert (log[0]["sites"], log[0]["hosts"], log[0]["port"]) == (["north"], ["127.0.0.1"], int(port))
    assert log[1] == {**log[1], "site": "south", "key": south}
    assert log[2]["key"] == f"south-{south}" and log[3]["hosts"] == ["127.0.0.1"]
    assert oct((fed.server / AUDIT_LOG).stat().st_mode)[-3:] == "644"  # nothing secret in it


def test_an_audit_log_that_cannot_be_written_is_an_error_saying_the_action_was_done(tmp_path):
    fed = Federation(tmp_path / "federation")
    fed.server.mkdir(parents=True)
    (fed.server / AUDIT_LOG).mkdir()  # not a file
    with pytest.raises(MedfedError, match=r"stop was done, but the audit log .*audit\.jsonl could not record it"):
        record(fed, "stop", run="17")
