"""Replies the SuperLink writes for a site that went offline count as that site's, not as a reply of node 1; replies
come back in site order, whatever order they arrived in."""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message

from server.screening import SiteNames, screen, unanswered
from server.wire import exchange
from tests.grid import LocalGrid


def answering(name: str):
    """A site that answers with its metrics."""

    def answer(msg: Message) -> Message:
        content = RecordDict({"metrics": MetricRecord({"num-examples": 5}), "site": ConfigRecord({"name": name})})
        return Message(content, reply_to=msg)

    return answer


def going_offline(name: str):
    """A site that answers once, then goes offline: the SuperLink answers in its place once its heartbeat expires."""
    answered: list[Message] = []

    def answer(msg: Message) -> Message:
        if answered:
            return create_message_error_unavailable_res_message(msg.metadata, "node_unavail")
        answered.append(msg)
        return answering(name)(msg)

    return answer


def query(node: int) -> Message:
    """A query message to one node."""
    return Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type="query")


def test_a_superlink_error_reply_is_named_as_the_offline_site():
    grid, names = LocalGrid({7: answering("north"), 9: going_offline("west")}), SiteNames()
    assert not screen(exchange(grid, [query(7), query(9)], timeout=5), None, names).problems  # binds 9 to west
    messages = [query(7), query(9)]
    replies = exchange(grid, messages, timeout=5)
    assert sorted(r.metadata.src_node_id for r in replies) == [7, 9]
    out = screen(replies, None, names)
    assert [p["site"] for p in out.problems] == ["west"]
    assert out.problems[0]["event"] == "refused"
    assert out.problems[0]["reason"].startswith("the SuperLink answered for the site: ")
    assert unanswered(messages, replies, names, "late") == []  # answered, by the SuperLink: not also a no-reply


def test_replies_come_back_in_site_order_whatever_order_they_arrived_in():
    sites = {3: answering("south"), 5: answering("east"), 8: answering("north")}
    for order in ([3, 5, 8], [8, 3, 5]):
        replies = exchange(LocalGrid(sites), [query(node) for node in order], timeout=5)
        assert [r.content.config_records["site"]["name"] for r in replies] == ["east", "north", "south"]
