"""Screen site replies before aggregation: refusals, missing records, wrong shapes, NaN/Inf are left out."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from shared.arrays import mismatch, non_finite
from shared.assessment import RECORD, read_assessment
from shared.groups import coverage_problem
from shared.identity import load_public_keys, verify

SITE_KEYS_ENV = "MEDFED_SITE_KEYS"  # the server kit's folder of provisioned site keys, set by `medfed-server start`


@dataclass
class Screened:
    """Replies split into accepted ones (content reduced to what aggregation needs) and the rest."""

    accepted: list[Message] = field(default_factory=list)
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    summed: int = 0  # under secure aggregation: how many sites' updates the one accepted reply sums
    stage_s: dict[str, float] = field(default_factory=dict)  # under secure aggregation: each stage's wall time
    assessments: dict[str, dict] = field(default_factory=dict)  # the final evaluation's, per site (shared.assessment)

    @property
    def contributors(self) -> int:
        """How many sites' updates go into this round's aggregate."""
        return self.summed or len(self.accepted)


class SiteNames:
    """Which site each node is. A node's name is bound by its first accepted reply and never changes; with the
    provisioned sites' public keys (a federation), a name counts only when signed with that site's key."""

    def __init__(self, keys: dict[str, ec.EllipticCurvePublicKey] | None = None) -> None:
        self._keys = keys
        self._names: dict[int, str] = {}  # node id -> site
        self._nodes: dict[str, int] = {}  # site -> node id

    @classmethod
    def from_environment(cls) -> SiteNames:
        """Bound to the provisioned keys when `medfed-server start` named their folder (MEDFED_SITE_KEYS)."""
        folder = os.environ.get(SITE_KEYS_ENV)
        return cls(load_public_keys(Path(folder)) if folder else None)

    def check(self, msg: Message) -> str | None:
        """Why a reply cannot count as the site it names (None: it is that site, and the node is now bound to it)."""
        if not (msg.has_content() and "site" in msg.content.config_records):
            return None
        record, node = msg.content.config_records["site"], msg.metadata.src_node_id
        claimed = str(record.get("name", ""))
        if self._keys is not None:
            key = self._keys.get(claimed)
            if key is None:
                return f"node {node} names itself '{claimed}', which is not a provisioned site"
            if not verify(key, str(record.get("identity", "")), msg.metadata.run_id, node, claimed):
                return f"node {node} names itself '{claimed}' without that site's key"
        bound, owner = self._names.get(node), self._nodes.get(claimed)
        if bound is not None and bound != claimed:
            return f"node {node} is site '{bound}' and now names itself '{claimed}'"
        if owner is not None and owner != node:
            return f"node {node} names itself '{claimed}', which node {owner} already is"
        self._names[node], self._nodes[claimed] = claimed, node
        return None

    def of(self, msg: Message) -> str:
        """The replying node's bound site name; for a node not bound yet, the name its reply or refusal gives when
        that is a known site no other node is bound to (a refusal cannot be signed: Flower's error replies hold
        only a code and a reason), else its node id with the name it claims."""
        node = msg.metadata.src_node_id
        if node in self._names:
            return self._names[node]
        claimed = None
        if msg.has_content() and "site" in msg.content.config_records:
            claimed = str(msg.content.config_records["site"].get("name", ""))
        elif msg.has_error() and (named := re.match(r"site '([^']+)'", msg.error.reason or "")):
            claimed = named.group(1)
        known = self._keys is None or claimed in self._keys
        if claimed and known and claimed not in self._nodes and not (msg.has_content() and self._keys is not None):
            return claimed
        return f"node-{node} (claims '{claimed}')" if claimed else f"node-{node}"

    def node(self, node_id: int) -> str:
        """The site a node is bound to, else its node id."""
        return self._names.get(node_id, f"node-{node_id}")


def screen(replies: list[Message], expected: ArrayRecord | None, names: SiteNames) -> Screened:
    """Check each reply; with `expected` set (training), its arrays must match it in keys, shapes and be finite."""
    out = Screened()
    for msg in replies:
        impostor = names.check(msg)
        site = names.of(msg)
        problem = impostor or _problem(msg, expected)
        if problem:
            kind = "refused" if msg.has_error() else "rejected"
            out.problems.append({"site": site, "event": kind, "reason": problem})
            continue
        metrics = msg.content.metric_records["metrics"]
        out.site_metrics[site] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if expected is None and RECORD in msg.content.metric_records:
            try:
                out.assessments[site] = read_assessment(msg.content.metric_records[RECORD])
            except ValueError as exc:  # the metrics still count; the report shows the site without it
                out.problems.append({"site": site, "event": "rejected", "reason": f"its final assessment: {exc}"})
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
    return mismatch(expected, arrays) or non_finite(arrays) or coverage_problem(arrays)


def unanswered(messages: list[Message], replies: list[Message], names: SiteNames, reason: str) -> list[dict[str, str]]:
    """A no-reply event for each message whose site did not answer."""
    answered = {r.metadata.src_node_id for r in replies}
    return [
        {"site": names.node(m.metadata.dst_node_id), "event": "no-reply", "reason": reason}
        for m in messages
        if m.metadata.dst_node_id not in answered
    ]
