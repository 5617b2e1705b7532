"""A message the worker is handling is on disk, readable by the agent's user only, with the reply that says the
worker stopped on it: the next worker sends that reply."""

from __future__ import annotations

from flwr.app import Message, RecordDict
from flwr.common.constant import ErrorCode

from client.inflight import Inflight


def test_a_kept_message_is_left_with_the_reply_saying_its_worker_stopped(tmp_path):
    ask = Message(RecordDict(), dst_node_id=7, message_type="train")
    ask.metadata.__dict__["_message_id"] = "ab12"
    inflight = Inflight(tmp_path)
    kept = inflight.keep("token-1", ask, "north")
    assert kept.stat().st_mode & 0o777 == 0o600
    [(path, token, reply)] = inflight.left()
    assert (path, token) == (kept, "token-1")
    assert reply.metadata.reply_to_message_id == "ab12" and reply.metadata.message_type == "train"
    assert reply.error.code == ErrorCode.CLIENT_APP_CRASHED
    assert reply.error.reason.startswith("site 'north': its worker stopped while handling this message")
    kept.unlink()
    assert inflight.left() == []
