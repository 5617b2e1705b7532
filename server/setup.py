"""The federated setup step before a study's first round: every connected site answers a query with counts over
its own train split (survival's event-time histogram), and the server completes the study from their sum."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from server import wire
from server.screening import SiteNames, screen, unanswered
from shared.config import StudyConfig
from shared.errors import MedfedError
from shared.tasks import get_task


@dataclass
class Setup:
    """The completed study (None: it could not be completed, `reason` says why) and the problems met."""

    study: StudyConfig | None
    problems: list[dict[str, str]] = field(default_factory=list)
    reason: str = ""


def federated_setup(grid: Grid, study: StudyConfig, names: SiteNames) -> Setup:
    """Ask every connected site, bound each answer (the task's check), and complete the study from at least
    federation.min-sites usable answers."""
    task, fed = get_task(study.task), study.federation
    config = ConfigRecord({"study": study.to_json()})
    messages = [
        Message(RecordDict({"config": config}), dst_node_id=node, message_type=MessageType.QUERY)
        for node in grid.get_node_ids()
    ]
    replies = wire.exchange(grid, messages, fed.round_timeout)
    result = screen(replies, None, names)
    problems = result.problems + unanswered(messages, replies, names, f"no reply within {fed.round_timeout:.0f} s")
    answers: list[dict[str, Any]] = []
    for reply in result.accepted:
        answer = dict(reply.content.metric_records["metrics"])
        problem = task.setup_problem(study, answer)
        if problem:
            problems.append({"site": names.of(reply), "event": "rejected", "reason": f"setup answer: {problem}"})
        else:
            answers.append(answer)
    if len(answers) < fed.min_sites:
        reason = f"setup: only {len(answers)} usable answer(s), federation.min-sites is {fed.min_sites}"
        return Setup(None, problems, reason)
    try:
        return Setup(task.complete_study(study, answers), problems)
    except MedfedError as exc:
        return Setup(None, problems, f"setup: {exc}")
