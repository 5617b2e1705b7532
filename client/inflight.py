"""The messages the site worker is handling, on disk: a worker started after one that died answers each at once.

Without this, a message whose worker was killed would hold up the site's SuperNode until Flower's task heartbeat
limit (one minute) passed, and every message behind it with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flwr.app import Error, Message
from flwr.common.constant import ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as MessageProto  # pylint: disable=E0611


def interrupted(message: Message, site: str) -> Message:
    """The reply to `message` when the worker handling it died before answering."""
    reason = f"site '{site}': its worker stopped while handling this message and was restarted; no update was sent"
    return Message(Error(ErrorCode.CLIENT_APP_CRASHED, reason), reply_to=message)


class Inflight:
    """One file per message being handled: its task token and the reply saying it was interrupted.

    The folder is the agent's, readable by its user only (a task token lets its holder answer that message).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def keep(self, token: str, message: Message, site: str) -> Path:
        """Record a message being handled; the caller removes the file once the message's reply is out."""
        reply = message_to_proto(interrupted(message, site)).SerializeToString().hex()
        path = self.folder / f"{message.metadata.message_id}.json"
        tmp = path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump({"token": token, "reply": reply}, out)
        os.replace(tmp, path)  # not fsync'd: it must outlive the worker's process, not the machine (nor the SuperNode)
        return path

    def left(self) -> list[tuple[Path, str, Message]]:
        """What a worker that died left unanswered: each record's file, its task token and the reply to send."""
        records = []
        for path in sorted(self.folder.glob("*.json")):
            record = json.loads(path.read_text())
            reply = message_from_proto(MessageProto.FromString(bytes.fromhex(record["reply"])))
            records.append((path, record["token"], reply))
        return records
