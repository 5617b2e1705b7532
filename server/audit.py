"""The coordinator's audit log: one JSON line per operator action that changes the federation, in the server kit.

Each `medfed-server` command that provisions, adds or removes a site, renews the certificate, starts the SuperLink,
registers keys, submits or stops a study appends what it did, when and as which OS user, to `server/audit.jsonl`:
the record a consortium's governance asks of its coordinator. Lines are only ever appended (O_APPEND, one write each,
fsync'd); the log holds names, ids and digests, never a study's data or a key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from typing import Any

from server.provision import Federation
from shared.atomic import write_all
from shared.errors import MedfedError
from shared.identity import os_user

AUDIT_LOG = "audit.jsonl"


def record(fed: Federation, action: str, **details: Any) -> None:
    """Append one action to the federation's audit log; a log that cannot be written is an error, not silence."""
    entry = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "user": os_user(),
        "host": socket.gethostname(),
        "action": action,
        **details,
    }
    path = fed.server / AUDIT_LOG
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            write_all(fd, (json.dumps(entry) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise MedfedError(f"{action} was done, but the audit log {path} could not record it ({exc.strerror})") from exc
