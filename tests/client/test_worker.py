"""The site worker runs only this site's installed medfed: a bundle of another version or with changed code is
refused by name, in the site's log and to the server, and its code is never run. It waits for a message's content
without Flower's 1 s backoff, and asks for tasks often while a study runs, rarely while idle."""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.cli.build import build_fab_from_disk
from flwr.common.constant import SubStatus
from flwr.common.serde import message_from_proto
from flwr.proto.message_pb2 import (  # pylint: disable=E0611
    PullObjectRequest,
    PullObjectResponse,
    PushObjectResponse,
)
from flwr.proto.runtime_pb2 import PushAppMessagesRequest, PushAppMessagesResponse  # pylint: disable=E0611
from flwr.supercore.fab import Fab
from flwr.supercore.runtime import RuntimeHttpClient

from client import worker as client_worker
from client.agent import supernode_command, worker_command
from client.inflight import Inflight
from client.sitefile import load_site_file
from client.status import StatusFile, load_status
from client.worker import InstalledApp, RuntimeClient, foreign_code, installed_code
from server.deployment import PROJECT_ROOT
from server.provision import provision

VERSION = "0.1.0"
MESSAGE_ID = "6f6e" * 16  # Flower's message ids are SHA-256 hex digests


@functools.cache
def built() -> bytes:
    return build_fab_from_disk(PROJECT_ROOT)  # seconds: it walks the checkout


def bundle(edit=None) -> Fab:
    """The app bundle `flwr run` sends for this checkout, optionally with one file's content changed."""
    content = built()
    if edit is None:
        return Fab("same", content, {})
    source, out = zipfile.ZipFile(io.BytesIO(content)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, edit(name, source.read(name)))
    return Fab("edited", out.getvalue(), {})


def test_the_sites_own_code_runs():
    assert foreign_code(bundle(), installed_code(), VERSION) is None


def skip_the_cap(name: str, data: bytes) -> bytes:
    return (
        data.replace(b"study.privacy.check_cap(site.name", b"(lambda *a: None)(site.name")
        if name == ("client/admission.py")
        else data
    )


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (skip_the_cap, "differs from this site's medfed 0.1.0 in 1 file(s): client/admission.py"),
        (
            lambda n, d: d.replace(b'version = "0.1.0"', b'version = "0.0.9"') if n == "pyproject.toml" else d,
            "the app is medfed 0.0.9, this site runs medfed 0.1.0",
        ),
    ],
)
def test_a_modified_or_other_version_app_is_refused(edit, why, caplog):
    fab = bundle(edit)
    assert why in foreign_code(fab, installed_code(), VERSION)
    ran = []
    app = InstalledApp("north", lambda message, context: ran.append(message))
    with caplog.at_level(logging.ERROR, logger="medfed.site"):
        reply = app(train_message(), None, fab)
    assert not ran and reply.has_error()
    assert reply.error.reason == "site 'north' runs only its own installed medfed 0.1.0; the app sent differs"
    assert why in caplog.text  # the detail stays in the site's log


def test_a_bundle_is_checked_by_its_content_not_by_the_hash_the_server_names():
    ran = []
    app = InstalledApp("north", lambda message, context: ran.append(message) or message)
    app(train_message(), None, Fab("h", bundle().content, {}))
    reply = app(train_message(), None, Fab("h", bundle(skip_the_cap).content, {}))
    assert len(ran) == 1 and reply.has_error()


def test_an_app_that_raises_still_replies_naming_the_site():
    def broken(message, context):
        raise KeyError("config")

    reply = InstalledApp("north", broken)(train_message(), None, bundle())
    assert reply.error.reason == "site 'north': internal error in its worker (KeyError)"


def train_message() -> Message:
    ask = Message(RecordDict(), dst_node_id=1, message_type="train")
    ask.metadata.__dict__["_message_id"] = MESSAGE_ID
    return ask


def test_agent_runs_the_supernode_in_process_isolation_with_a_worker_secret(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"], 9092)
    site = load_site_file(fed.site("north") / "site.toml")
    secret = tmp_path / "secret"
    command = supernode_command(site, secret=secret)
    assert command[command.index("--isolation") + 1] == "process"
    assert command[command.index("--superexec-auth-secret-file") + 1] == str(secret)
    tasks = tmp_path / "tasks"
    assert worker_command(site, secret, tasks)[1:] == [
        "worker",
        "--config",
        str(site.path),
        "--secret-file",
        str(secret),
        "--tasks-dir",
        str(tasks),
    ]
    assert "--isolation" not in supernode_command(site)  # app-code = "server": Flower runs the server's bundle


def test_an_object_the_supernode_is_still_receiving_is_asked_for_again_within_50_ms(monkeypatch):
    """Flower's own pull would back off 1 s; the worker asks again until OBJECT_WAIT_S, then Flower's backoff rules."""
    answers = iter([answer(True, False), answer(True, False), answer(True, True)])
    monkeypatch.setattr(RuntimeHttpClient, "PullObject", lambda self, request: next(answers))
    client = RuntimeClient.from_server_address("127.0.0.1:1", True, None, [])
    started = time.monotonic()
    assert client.PullObject(PullObjectRequest()).object_available
    assert time.monotonic() - started < 0.5
    monkeypatch.setattr(client_worker, "OBJECT_WAIT_S", 0.2)
    monkeypatch.setattr(RuntimeHttpClient, "PullObject", lambda self, request: answer(True, False))
    assert not client.PullObject(PullObjectRequest()).object_available  # Flower's backoff and limits take over
    monkeypatch.setattr(RuntimeHttpClient, "PullObject", lambda self, request: answer(False, False))
    started = time.monotonic()
    assert not client.PullObject(PullObjectRequest()).object_found  # unknown to the SuperNode: no waiting
    assert time.monotonic() - started < 0.1


def answer(found: bool, available: bool) -> PullObjectResponse:
    return PullObjectResponse(object_found=found, object_available=available, object_content=b"x" if available else b"")


class Task:
    """One task through the worker, with Flower's Runtime API calls recorded and the first reply pushes failing."""

    def __init__(self, monkeypatch, tmp_path, failing_pushes: int, pull=None, outcome: str = "received") -> None:
        self.pushed, self.outputs, self.failing = [], [], failing_pushes
        (tmp_path / f"{MESSAGE_ID}.{outcome}").touch()  # what the agent read off the SuperNode's log (client.receipts)
        self.ran: list[Message] = []
        quiet = type("Heartbeat", (), {"start": lambda self: None, "stop": lambda self: None})
        monkeypatch.setattr(client_worker, "HeartbeatSender", lambda fn: quiet())
        monkeypatch.setattr(
            client_worker,
            "pull_task_input",
            pull or (lambda task: (train_message(), Context(0, 1, {}, RecordDict(), {}), None, bundle())),
        )
        monkeypatch.setattr(RuntimeHttpClient, "PushMessages", lambda _, request: self.push(request))  # Flower's push
        monkeypatch.setattr(RuntimeHttpClient, "PushObject", lambda _, request: PushObjectResponse(stored=True))
        monkeypatch.setattr(client_worker, "push_task_output", lambda **kw: self.outputs.append(kw["sub_status"]))
        app = InstalledApp("north", self.answer)
        self.status = StatusFile(tmp_path.parent / f"{tmp_path.name}-worker.json")  # beside the in-flight folder
        self.worker = client_worker.SiteWorker("127.0.0.1:1", b"secret", app, Inflight(tmp_path), self.status)

    def answer(self, message: Message, context) -> Message:
        self.ran.append(message)
        return Message(RecordDict(), reply_to=message)

    def push(self, request: PushAppMessagesRequest) -> PushAppMessagesResponse:
        """The SuperNode's side of a reply's header: it takes it, or the first `failing` times, cannot be reached."""
        if self.failing:
            self.failing -= 1
            raise ConnectionError("runtime API")
        self.pushed.append(message_from_proto(request.messages_list[0]))
        return PushAppMessagesResponse(objects_to_push=[request.message_object_trees[0].object_id], session_id="s")


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_message_always_gets_a_reply_or_is_left_for_flower_to_answer(monkeypatch, tmp_path, failing):
    """The SuperNode waits without limit for a message's reply: a task is never closed as failed without one."""
    task = Task(monkeypatch, tmp_path, failing)
    task.worker._run("token")
    if failing == 0:
        assert len(task.pushed) == 1 and not task.pushed[0].has_error() and task.outputs == [SubStatus.COMPLETED]
    elif failing == 1:  # the app's reply could not be pushed: an error reply naming the site takes its place
        assert task.pushed[0].error.reason == "site 'north': its worker could not handle the message (ConnectionError)"
        assert task.outputs == [SubStatus.FAILED]
    else:  # no reply at all: the task stays open, so that its heartbeat runs out and the SuperNode answers it
        assert task.pushed == [] and task.outputs == []
    assert len(list(tmp_path.glob("*.json"))) == (failing == 2)  # a message not answered stays on record


def test_each_message_handled_is_logged_and_kept_in_the_workers_status_file(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medfed.site")
    task = Task(monkeypatch, tmp_path, 0)
    task.worker._run("token")
    saved = load_status(task.status.path)
    assert saved["pid"] == os.getpid() and saved["handled"] == 1
    assert (saved["last"]["type"], saved["last"]["outcome"]) == ("train", "answered")
    assert re.search(r"site 'north': train message of run \d+ answered in \d+\.\d s", caplog.text)
    refusal = Message(Error(code=1, reason="site 'north': over its cap"), reply_to=train_message())
    task.worker._handled(train_message(), refusal, 0.25)
    saved = load_status(task.status.path)
    assert saved["handled"] == 2 and saved["last"]["outcome"] == "refused: site 'north': over its cap"


def test_a_message_the_supernode_let_go_is_neither_run_nor_answered(monkeypatch, tmp_path):
    """Its run ended as the SuperNode took it: a reply would be sent in place of the next message's, and every reply
    after it one message late."""
    task = Task(monkeypatch, tmp_path, 0, outcome="dropped")
    task.worker._run("token")
    assert task.ran == [] and task.pushed == [] and task.outputs == [SubStatus.FAILED]
    assert list(tmp_path.iterdir()) == []  # its record read, and nothing left on record as being handled


def test_a_message_the_supernode_never_confirms_is_run_after_the_wait(monkeypatch, tmp_path, caplog):
    task = Task(monkeypatch, tmp_path, 0, outcome="unknown")
    monkeypatch.setattr(client_worker, "RECEIPT_WAIT_S", 0.05)
    task.worker._run("token")
    assert len(task.ran) == 1 and len(task.pushed) == 1 and task.outputs == [SubStatus.COMPLETED]
    assert "the SuperNode did not confirm a train message within 0 s; running it" in caplog.text


def test_a_reply_whose_content_the_supernode_dropped_gets_no_second_reply(monkeypatch, tmp_path, caplog):
    """The operator stopped the study as the reply went out: the SuperNode took the reply's header, found the run
    ended, and dropped the reply and its content mid-push. An error reply after it would be sent in place of the
    next message's reply, and every reply after it one message late. Flower's own `push_message` runs here, over
    a Runtime API that takes the header and stores no content, as the SuperNode's did."""
    task = Task(monkeypatch, tmp_path, 0)
    monkeypatch.setattr(RuntimeHttpClient, "PushObject", lambda _, request: PushObjectResponse(stored=False))
    task.worker._run("token")
    assert len(task.ran) == 1 and len(task.pushed) == 1 and not task.pushed[0].has_error()  # no error reply after it
    assert task.outputs == [SubStatus.FAILED]  # the task is closed, so Flower does not answer it either
    assert list(tmp_path.glob("*.json")) == []  # a restarted worker has nothing to answer for it
    assert "took the reply to a train message but not all its content (ObjectPushError)" in caplog.text
    assert "No second reply is sent" in caplog.text


def test_a_task_whose_message_never_arrived_is_closed_as_failed(monkeypatch, tmp_path):
    def gone(task):
        raise RuntimeError("No messages received from Runtime API")

    task = Task(monkeypatch, tmp_path, 0, pull=gone)
    task.worker._run("token")
    assert task.pushed == [] and task.outputs == [SubStatus.FAILED]  # the SuperNode has already let the message go


def test_a_worker_polls_every_second_when_idle_and_four_times_a_second_while_a_study_runs(monkeypatch, tmp_path):
    """Polling every 0.1 s throughout cost a site 6 % of a core (its SuperNode serving the polls included)."""
    worker = Task(monkeypatch, tmp_path, 0).worker
    now, waits = [0.0], []
    tasks = iter([False, False, True, *[False] * 400])

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds
        if now[0] > 40:
            raise StopIteration  # ends serve()'s loop

    monkeypatch.setattr(worker, "run_next", lambda: next(tasks))
    monkeypatch.setattr(client_worker, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=sleep))
    with pytest.raises(StopIteration):
        worker.serve()
    assert waits[:2] == [1.0, 1.0]  # idle
    running = waits[2:]  # the task came at 2 s: a quarter of a second until 30 s after it, then idle again
    assert running[:120] == [0.25] * 120 and set(running[120:]) == {1.0} and len(running) > 121


@pytest.mark.skipif(not Path("/proc/self/oom_score_adj").exists(), reason="Linux's OOM killer score")
def test_the_worker_is_the_first_process_the_oom_killer_ends():
    code = "from client.worker import oom_first; oom_first(); print(open('/proc/self/oom_score_adj').read())"
    score = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(score) == client_worker.OOM_SCORE_ADJ > 0
