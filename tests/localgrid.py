"""A Grid stand-in that hands each message to a site's handler in this process: the round loop without a runtime."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from uuid import uuid4

import torch
from flwr.app import Message, MessageType

from client.handlers import handle
from client.site import SiteConfig
from server.history import History
from server.loop import run_study
from server.outputs import StudyOutputs
from shared.config import StudyConfig
from shared.tasks.tabular.demo import write_demo_sites
from tests.conftest import set_task_identity


class LocalGrid:
    """Node i + 1 is `sites[i]`; each pushed message is answered at once by that site's real handler."""

    def __init__(self, sites: list[SiteConfig]) -> None:
        self.sites = {i + 1: site for i, site in enumerate(sites)}
        self._replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        """Every site is connected."""
        return list(self.sites)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Deliver and answer each message; return their ids."""
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())  # what Flower's own in-memory grid does
            site = self.sites[msg.metadata.dst_node_id]
            reply = handle(msg, site, train=msg.metadata.message_type == MessageType.TRAIN)
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies to these message ids."""
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]


def run_in_process(
    study: StudyConfig, folder: Path, sites_folder: Path, ledger_dir: Path, sites: list[SiteConfig] | None = None
) -> History:
    """The study over `sites`, by default the tabular demo's 3 hospitals (files written to `sites_folder`), each
    answering in this process on one torch thread (on CI's 2 shared cores more only contend); the demo's sites keep
    their state in `ledger_dir`. For module fixtures: it sets the Flower task identity itself."""
    set_task_identity()
    if sites is None:
        sites = [SiteConfig(p.stem, p, ledger_dir=ledger_dir) for p in write_demo_sites(sites_folder, 3, seed=2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(LocalGrid(sites), study, StudyOutputs(folder))[1]
    finally:
        torch.set_num_threads(threads)
