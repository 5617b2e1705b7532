"""The round loop keeps the previous global model when an aggregate is rejected, and never calls a study whose final
evaluation failed everywhere completed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict

from server.loop import run_study
from server.outputs import StudyOutputs
from shared.arrays import model_arrays
from shared.tasks import build_model
from tests.conftest import with_federation
from tests.grid import LocalGrid


def site(name: str, factor: float = 1.0, evaluates: bool = True):
    """A site that returns the global model nudged (times `factor`), and scores it unless `evaluates` is False."""

    def answer(msg: Message) -> Message:
        if msg.metadata.message_type == MessageType.EVALUATE and not evaluates:
            return Message(Error(code=4001, reason=f"site '{name}': evaluation failed"), reply_to=msg)
        metrics = {"num-examples": 10, "accuracy": 0.9}
        content = RecordDict({"metrics": MetricRecord(metrics), "site": ConfigRecord({"name": name})})
        if msg.metadata.message_type == MessageType.TRAIN:
            received = msg.content["arrays"]
            content["arrays"] = ArrayRecord({k: Array(a.numpy() * factor + 0.001) for k, a in received.items()})
            content["metrics"] = MetricRecord({**metrics, "eval-num-examples": 10, "eval-accuracy": 0.9})
        return Message(content, reply_to=msg)

    return answer


def initial_model(study) -> ArrayRecord:
    """The global model the loop starts from (seeded like run_study)."""
    torch.manual_seed(study.seed)
    return model_arrays(build_model(study))


def test_a_scaled_site_gets_each_round_rejected_and_the_first_model_kept(study, tmp_path):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=2)
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c", factor=1000.0)})
    arrays, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    rejected = [e for e in history.events if e["event"] == "aggregate-rejected"]
    assert [e["round"] for e in rejected] == [1, 2]
    assert all(e["reason"].startswith("the aggregate moves the global model by") for e in rejected)
    assert rejected[1]["reason"].endswith("the round failed and the round-1 model is kept")
    first = initial_model(study)
    assert all(np.array_equal(arrays[k].numpy(), first[k].numpy()) for k in first)
    assert history.status == "completed"


def test_more_rejected_rounds_than_allowed_stop_the_study_cleanly(study, tmp_path):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=3, max_failed_rounds=1)
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c", factor=1000.0)})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    assert history.status == "stopped: 2 rounds' aggregates rejected, federation.max-failed-rounds is 1"
    assert [e["round"] for e in history.events if e["event"] == "aggregate-rejected"] == [1, 2]


@pytest.mark.parametrize("failing", [("a", "b", "c"), ("a", "b")], ids=["every-site", "two-of-three"])
def test_a_final_evaluation_failed_at_every_site_is_not_completed(study, tmp_path, failing):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=1)
    grid = LocalGrid({i: site(name, evaluates=name not in failing) for i, name in enumerate("abc", start=1)})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    refused = sorted(e["site"] for e in history.events if e["event"] == "refused")
    assert refused == list(failing)
    expected = "failed: final evaluation failed at every site" if len(failing) == 3 else "completed"
    assert history.status == expected


def test_a_resumed_study_keeps_every_event_of_the_run_that_stopped(study, tmp_path):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=3)
    trained = []

    def flaky(msg: Message) -> Message:
        trained.append(msg.metadata.message_type)
        if trained.count(MessageType.TRAIN) == 2:  # site c refuses the first run's round 2, and only that
            return Message(Error(code=4001, reason="site 'c': data being migrated"), reply_to=msg)
        return site("c")(msg)

    grid = LocalGrid({11: site("a"), 12: site("b"), 13: flaky})
    _, first = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    assert first.status.startswith("stopped: round 2")
    _, resumed = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    assert resumed.status == "completed"
    assert resumed.events[: len(first.events)] == first.events  # the refusal and the stop, as recorded then
    assert [(e["round"], e["event"]) for e in resumed.events if e["site"] in ("c", "-")] == [
        (2, "refused"),
        (2, "stopped"),
        (1, "resumed"),
    ]
