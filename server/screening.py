"""Screen site replies before aggregation: refusals, missing records, wrong shapes, NaN/Inf are left out."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from shared.arrays import mismatch, non_finite


@dataclass
class Screened:
    """Replies split into accepted ones (content reduced to what aggregation needs) and the rest."""

    accepted: list[Message] = field(default_factory=list)
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    summed: int = 0  # under secure aggregation: how many sites' updates the one accepted reply sums

    @property
    def contributors(self) -> int:
        """How many sites' updates go into this round's aggregate."""
        return self.summed or len(self.accepted)


class SiteNames:
    """Node id to site name, learnt from replies, so an error reply can still be attributed."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def of(self, msg: Message) -> str:
        """The replying site's name (as it last announced it), else its node id."""
        node = msg.metadata.src_node_id
        if msg.has_content() and "site" in msg.content.config_records:
            self._names[node] = str(msg.content.config_records["site"]["name"])
        elif msg.has_error() and (named := re.match(r"site '([^']+)'", msg.error.reason or "")):
            self._names[node] = named.group(1)
        return self._names.get(node, f"node-{node}")

    def node(self, node_id: int) -> str:
        """The name a node last announced, else its node id."""
        return self._names.get(node_id, f"node-{node_id}")


def screen(replies: list[Message], expected: ArrayRecord | None, names: SiteNames) -> Screened:
    """Check each reply; with `expected` set (training), its arrays must match it in keys, shapes and be finite."""
    out = Screened()
    for msg in replies:
        site = names.of(msg)
        problem = _problem(msg, expected)
        if problem:
            kind = "refused" if msg.has_error() else "rejected"
            out.problems.append({"site": site, "event": kind, "reason": problem})
            continue
        metrics = msg.content.metric_records["metrics"]
        out.site_metrics[site] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if expected is not None:
            msg = copy.copy(msg)  # the received reply stays as it came; the strategy gets only what it aggregates
            msg.content = RecordDict(
                {
                    "arrays": msg.content.array_records["arrays"],
                    "metrics": MetricRecord({"num-examples": int(metrics["num-examples"])}),
                }
            )
        out.accepted.append(msg)
    return out


def _problem(msg: Message, expected: ArrayRecord | None) -> str | None:
    if msg.has_error():
        return msg.error.reason or f"error code {msg.error.code}"
    content = msg.content
    metrics = content.metric_records.get("metrics")
    if metrics is None or "num-examples" not in metrics:
        return "reply has no metrics with num-examples"
    if expected is None:
        return None
    if not isinstance(metrics["num-examples"], int) or metrics["num-examples"] <= 0:
        return "num-examples must be a positive integer"
    arrays = content.array_records.get("arrays")
    if arrays is None:
        return "reply has no model arrays"
    return mismatch(expected, arrays) or non_finite(arrays)


def unanswered(messages: list[Message], replies: list[Message], names: SiteNames, reason: str) -> list[dict[str, str]]:
    """A no-reply event for each message whose site did not answer."""
    answered = {r.metadata.src_node_id for r in replies}
    return [
        {"site": names.node(m.metadata.dst_node_id), "event": "no-reply", "reason": reason}
        for m in messages
        if m.metadata.dst_node_id not in answered
    ]
