"""What the SuperNode did with each message it took, read off its log: the site worker answers only the ones it kept.

Flower 1.41's SuperNode opens a message's task before it confirms the message to the SuperLink. When the study's run
ends in between (an operator's stop, say), the confirmation fails: the SuperNode logs "Ignoring message <id>" (or
"Failed to receive message <id>") and waits for no reply, yet the task stays open. Answered all the same, that reply
would go out in place of the next message's, and every reply after it one message late, so that the site looked
silent to every later study until its agent restarted. The agent, which echoes the SuperNode's log, records each
message's outcome in the worker's folder, and the worker runs a message only once it is recorded as received.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

# Flower's own log lines (flwr/supernode/start_client_internal.py); a test checks that the installed Flower writes them
RECEIVING = re.compile(r"Receiving: \S+ message \(ID: ([0-9a-f]+)\)")
RECEIVED = "Received successfully"
DROPPED = re.compile(r"Ignoring message ([0-9a-f]+)\.|Failed to receive message ([0-9a-f]+):")
OUTCOMES = ("received", "dropped")
MESSAGE_ID = re.compile(r"[0-9a-f]+")  # Flower's ids are SHA-256 hex digests
POLL_S = 0.01


class ReceiptWriter:
    """Reads the SuperNode's log line by line and records each message's outcome as an empty file in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.receiving: str | None = None  # the SuperNode takes one message at a time

    def read(self, line: str) -> None:
        """Take one line of the SuperNode's log."""
        if started := RECEIVING.search(line):
            self.receiving = started[1]
        elif RECEIVED in line and self.receiving is not None:
            self._record(self.receiving, "received")
        elif dropped := DROPPED.search(line):
            self._record(dropped[1] or dropped[2], "dropped")

    def _record(self, message_id: str, outcome: str) -> None:
        self.receiving = None
        try:
            (self.folder / f"{message_id}.{outcome}").touch()
        except OSError:  # the folder went with the agent's shutdown: nothing is left to answer
            pass


def receipt(folder: Path, message_id: str, timeout: float) -> str | None:
    """'received' or 'dropped' once the agent has recorded it (the record is then removed); None after `timeout` s,
    and at once for an id that is not hex: such an id names no record, nor any file outside the folder."""
    if not MESSAGE_ID.fullmatch(message_id):
        return None
    deadline = time.monotonic() + timeout
    while True:
        for outcome in OUTCOMES:
            path = folder / f"{message_id}.{outcome}"
            if path.exists():
                path.unlink(missing_ok=True)
                return outcome
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)
