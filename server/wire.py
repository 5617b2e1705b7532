"""Push messages to sites and pull their replies with a deadline, polling faster than Flower's own helper."""

from __future__ import annotations

import time

from flwr.app import Message
from flwr.serverapp import Grid

POLL_S = 0.005  # Flower's send_and_receive sleeps 0.1 s (simulation) or 3 s (deployment) between pulls


def exchange(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push messages and pull their replies until all arrive or `timeout` seconds pass."""
    if not messages:
        return []
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(pending))
        for msg in got:
            pending.discard(msg.metadata.reply_to_message_id)
        replies.extend(got)
        if pending:
            time.sleep(POLL_S)
    return replies
