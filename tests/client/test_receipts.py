"""The agent records, from the SuperNode's log, whether each message was received or let go; the worker reads it."""

from __future__ import annotations

import inspect
import io
import time
from collections import deque

from flwr.supernode import start_client_internal

from client.agent import _echo
from client.receipts import ReceiptWriter, receipt
from client.status import StatusFile

ID_A, ID_B = "a" * 64, "b" * 64
COLOUR = "\x1b[92mINFO \x1b[0m:      "  # as the SuperNode writes its lines to a pipe


def test_the_installed_flower_logs_the_lines_the_agent_reads():
    """A Flower upgrade that rewords them must fail here, not leave every message waiting for its receipt."""
    source = inspect.getsource(start_client_internal._pull_and_store_message)
    for text in (
        '"Receiving: %s message (ID: %s)"',
        '"Received successfully"',
        '"Failed to receive message %s: %s"',
        '"Run ID %s is not in `RUNNING` status. Ignoring message %s."',
    ):
        assert text in source, text


def test_each_message_is_recorded_received_or_let_go(tmp_path):
    writer = ReceiptWriter(tmp_path)
    for line in [
        f"{COLOUR}[RUN 17, ROUND 1]",
        f"{COLOUR}Receiving: train message (ID: {ID_A})",
        f"{COLOUR}Received successfully",
        f"{COLOUR}Receiving: evaluate message (ID: {ID_B})",
        f"{COLOUR}Run ID 17 is not in `RUNNING` status. Ignoring message {ID_B}.",
        f"{COLOUR}Run ID 17 is not in `RUNNING` status. Ignoring reply message {'c' * 64}.",  # a reply: not ours
        f"{COLOUR}Received successfully",  # no message being received: nothing to record
    ]:
        writer.read(line + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ID_A}.received", f"{ID_B}.dropped"]
    assert receipt(tmp_path, ID_A, 0) == "received" and receipt(tmp_path, ID_B, 0) == "dropped"
    assert list(tmp_path.iterdir()) == []  # each record is read once


def test_a_message_that_failed_to_arrive_is_let_go(tmp_path):
    writer = ReceiptWriter(tmp_path)
    writer.read(f"{COLOUR}Receiving: train message (ID: {ID_A})\n")
    writer.read(f"\x1b[91mERROR \x1b[0m:     Failed to receive message {ID_A}: object unavailable\n")
    assert receipt(tmp_path, ID_A, 0) == "dropped"


def test_the_worker_waits_for_the_record_and_gives_up_after_its_limit(tmp_path):
    started = time.monotonic()
    assert receipt(tmp_path, ID_A, 0.1) is None
    assert time.monotonic() - started >= 0.1


def test_the_agent_records_receipts_as_it_echoes_the_supernode(tmp_path, capsys):
    log = f"{COLOUR}Receiving: train message (ID: {ID_A})\n{COLOUR}Received successfully\n"
    tail: deque[str] = deque(maxlen=10)
    _echo(io.StringIO(log), tail, ReceiptWriter(tmp_path), StatusFile(tmp_path.parent / f"{tmp_path.name}.json"))
    assert receipt(tmp_path, ID_A, 0) == "received"
    assert capsys.readouterr().out == log and "".join(tail) == log  # the site's log is unchanged


def test_an_id_that_is_not_hex_names_no_file(tmp_path):
    """A crafted message id cannot make the worker look for, or delete, a record outside its folder."""
    outside = tmp_path / "outside.received"
    outside.touch()
    folder = tmp_path / "tasks"
    folder.mkdir()
    started = time.monotonic()
    assert receipt(folder, "../outside", 5) is None
    assert time.monotonic() - started < 1 and outside.exists()
