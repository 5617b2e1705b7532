"""A Flower Grid whose sites are plain functions answering at once: the server loop without a Flower runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Message
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid

Site = Callable[[Message], Message | None]  # None: the site does not answer


class LocalGrid(Grid):
    """Node id -> site function; each pushed message is answered (or not) when pushed."""

    def __init__(self, sites: dict[int, Site]) -> None:
        self.sites = sites
        self.pending: dict[str, Message] = {}
        self.pushed = 0

    def set_run(self, run) -> None:
        """Not needed: medfed's loop never asks for the run."""

    @property
    def run(self):
        """Not needed: medfed's loop never asks for the run."""
        raise NotImplementedError

    def create_message(self, *args, **kwargs) -> Message:
        """Not needed: Flower's strategies build their messages themselves."""
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        """Every site is always connected."""
        return list(self.sites)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Number each message as the SuperLink would, and let its site answer it."""
        ids = []
        for msg in messages:
            self.pushed += 1
            msg.metadata.__dict__["_message_id"] = f"m{self.pushed}"
            reply = self.sites[msg.metadata.dst_node_id](msg)
            if reply is not None:
                if reply.metadata.src_node_id != SUPERLINK_NODE_ID:  # else the SuperLink answered for the site
                    reply.metadata.__dict__["_src_node_id"] = msg.metadata.dst_node_id
                self.pending[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that arrived for these messages."""
        return [self.pending.pop(i) for i in list(message_ids) if i in self.pending]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push, then pull every reply."""
        return self.pull_messages(self.push_messages(messages))
