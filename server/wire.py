"""Push messages to sites and pull their replies with a deadline, polling faster than Flower's own helper."""

from __future__ import annotations

import time

from flwr.app import Error, Message
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid

POLL_S = 0.005  # Flower's send_and_receive sleeps 0.1 s (simulation) or 3 s (deployment) between pulls
POLL_MAX_S = 0.1  # the longest pause once no reply has come for a while


def exchange(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push messages and pull their replies until all arrive or `timeout` seconds pass; the replies in site order,
    whatever order they arrived in."""
    if not messages:
        return []
    sent = dict(zip(grid.push_messages(messages), messages, strict=True))
    pending = set(sent)
    replies: list[Message] = []
    deadline, pause = time.monotonic() + timeout, POLL_S
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(pending))
        for msg in got:
            pending.discard(msg.metadata.reply_to_message_id)
            replies.append(_attributed(msg, sent))
        # Back off while nothing arrives: in simulation this loop shares the GIL and the link state with the engine
        # serving the sites, and a tight loop over hundreds of pending replies slows the very replies it waits for.
        pause = POLL_S if got else min(2 * pause, POLL_MAX_S)
        if pending:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    return sorted(replies, key=_site_order)


def _site_order(reply: Message) -> tuple[str, int]:
    """The site a reply names, then its node: aggregation sums in this order, so a rerun's model is the same to the
    last bit, not shuffled by which site happened to answer first."""
    site = None if reply.has_error() else reply.content.config_records.get("site")
    return (str(site.get("name", "")) if site is not None else "", reply.metadata.src_node_id)


def _attributed(reply: Message, sent: dict[str, Message]) -> Message:
    """A reply the SuperLink wrote for a site (its node went offline, its reply expired) as that site's error, so it
    is counted and named as that site's, not as a reply from the SuperLink's own node."""
    original = sent.get(reply.metadata.reply_to_message_id)
    if reply.metadata.src_node_id != SUPERLINK_NODE_ID or not reply.has_error() or original is None:
        return reply
    error = Error(reply.error.code, f"the SuperLink answered for the site: {reply.error.reason}")
    return Message(error, reply_to=original)
