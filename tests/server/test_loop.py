"""The round loop keeps the previous global model when an aggregate is rejected, and never calls a study whose final
evaluation failed everywhere completed."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict
from safetensors.numpy import load_file

from server.loop import run_study
from server.outputs import StudyOutputs
from shared.arrays import model_arrays
from shared.config import PrivacyConfig, SimulationConfig
from shared.initial import starting_model
from tests.conftest import with_federation
from tests.grid import LocalGrid


def site(name: str, factor: float = 1.0, evaluates: bool = True, examples: int = 10, accuracy: float = 0.9):
    """A site that returns the global model nudged (times `factor`), and scores it unless `evaluates` is False; it
    claims `examples` training and test examples, and `accuracy` for training and evaluation."""

    def answer(msg: Message) -> Message:
        if msg.metadata.message_type == MessageType.EVALUATE and not evaluates:
            return Message(Error(code=4001, reason=f"site '{name}': evaluation failed"), reply_to=msg)
        metrics = {"num-examples": examples, "accuracy": accuracy}
        content = RecordDict({"metrics": MetricRecord(metrics), "site": ConfigRecord({"name": name})})
        if msg.metadata.message_type == MessageType.TRAIN:
            received = msg.content["arrays"]
            content["arrays"] = ArrayRecord({k: Array(a.numpy() * factor + 0.001) for k, a in received.items()})
            content["metrics"] = MetricRecord({**metrics, "eval-num-examples": examples, "eval-accuracy": accuracy})
        return Message(content, reply_to=msg)

    return answer


def refuses_once(train_message: int):
    """Site c, refusing its `train_message`-th training message (counted across runs), and only that one."""
    trained = []

    def answer(msg: Message) -> Message:
        trained.append(msg.metadata.message_type)
        if trained.count(MessageType.TRAIN) == train_message:
            return Message(Error(code=4001, reason="site 'c': data being migrated"), reply_to=msg)
        return site("c")(msg)

    return answer


def initial_model(study) -> ArrayRecord:
    """The global model the loop starts from."""
    return model_arrays(starting_model(study))


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


def test_a_simulation_past_its_memory_limit_stops_after_the_round_with_its_measured_cost(study, tmp_path):
    study = dataclasses.replace(with_federation(study, rounds=3), simulation=SimulationConfig(memory_limit_gib=0.01))
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c")})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    assert re.fullmatch(
        r"stopped: round 1 peaked at \d+\.\d GiB of memory, above the limit of 0\.0 GiB "
        r"\(simulation\.memory-limit-gib; \d+ MiB per simulated site\); lower simulation\.workers .*",
        history.status,
    )
    assert len(history.timings) == 1 and history.timings[0]["peak-total-gib"] > 0.01
    assert (tmp_path / "run" / "model.safetensors").is_file()  # what the study had is kept


def test_a_federation_server_records_its_memory_but_is_not_stopped_by_the_simulation_limit(study, tmp_path):
    study = with_federation(study, rounds=1, secure_aggregation="off")
    study = dataclasses.replace(study, simulation=SimulationConfig(memory_limit_gib=0.01))
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c")})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"), deployed=True)
    assert history.status == "completed" and history.timings[0]["processes"] >= 1


@pytest.mark.parametrize(
    ("settings", "weight"), [({"max_examples_median": 3.0}, 30), ({"weighting": "equal"}, 1)], ids=["median", "equal"]
)
def test_a_site_claiming_1e9_examples_cannot_dominate_the_weighted_metrics(study, tmp_path, settings, weight):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=1, **settings)
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c", examples=10**9, accuracy=0.1)})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    honest = 1 if weight == 1 else 10  # each honest site's weight, as aggregation counts it
    expected = (2 * honest * 0.9 + weight * 0.1) / (2 * honest + weight)
    weighted = {(r["kind"], r["round"]): r["accuracy"] for r in history.rows if r["site"] == "weighted"}
    # round 1's training, the initial model's evaluation in it (round 0), and the final evaluation (round 1)
    assert weighted == {key: pytest.approx(expected) for key in [("eval", 0), ("train", 1), ("eval", 1)]}


def test_a_resumed_study_keeps_every_event_of_the_run_that_stopped(study, tmp_path):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=3)
    grid = LocalGrid({11: site("a"), 12: site("b"), 13: refuses_once(2)})  # the first run's round 2
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


def test_average_last_releases_the_mean_of_the_last_rounds_and_a_resumed_study_releases_the_same(study, tmp_path):
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=4, average_last=3)
    arrays, history = run_study(LocalGrid({1: site("a"), 2: site("b"), 3: site("c")}), study, StudyOutputs(tmp_path))
    rounds = [load_file(str(tmp_path / "checkpoints" / f"round-00{r}.safetensors")) for r in (2, 3, 4)]
    released = load_file(str(tmp_path / "model.safetensors"))
    for key, array in arrays.items():
        assert np.allclose(array.numpy(), np.mean([r[key] for r in rounds], axis=0), atol=1e-6)
        assert np.array_equal(released[key], array.numpy())
        assert not np.allclose(array.numpy(), rounds[-1][key])  # the last round's model alone is not what is released
    averaged = [(e["round"], e["reason"]) for e in history.events if e["event"] == "averaged"]
    assert averaged == [(4, "the released model is the mean of rounds 2-4")]
    assert history.status == "completed"

    grid = LocalGrid({1: site("a"), 2: site("b"), 3: refuses_once(3)})  # the run stops holding the mean of round 2
    _, first = run_study(grid, study, StudyOutputs(tmp_path / "resumed"))
    assert first.status.startswith("stopped: round 3")
    resumed, history = run_study(grid, study, StudyOutputs(tmp_path / "resumed"))
    assert history.status == "completed"
    assert all(np.allclose(resumed[k].numpy(), arrays[k].numpy(), atol=1e-6) for k in arrays)


@pytest.mark.parametrize(("epsilon", "stops"), [(0.5, True), (50.0, False)])
def test_central_dp_whose_noise_alone_would_be_rejected_stops_before_spending_anything(study, tmp_path, epsilon, stops):
    """Three sites a round at ε = 0.5: the noise on the aggregate is many times the model's norm, so every round
    would be rejected by max-aggregate-change while the sites' ε is spent. At ε = 50 the study runs."""
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=1)
    # RDP: PRV resolves ε up to 20 (a study asking more is refused by its config)
    study = dataclasses.replace(study, privacy=PrivacyConfig(mode="central-server", epsilon=epsilon, accountant="rdp"))
    grid = LocalGrid({1: site("a"), 2: site("b"), 3: site("c")})
    _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    spent = [r for r in history.rows if r["kind"] == "privacy"]
    if stops:
        assert history.status.startswith("stopped: central DP's noise would move the global model by about")
        assert "more than federation.max-aggregate-change = 10 x its norm" in history.status
        assert not spent and not [r for r in history.rows if r["kind"] == "train"]  # no round ran, nothing spent
    else:
        assert history.status == "completed" and spent
        assert not [e for e in history.events if e["event"] == "aggregate-rejected"]


@pytest.mark.parametrize(
    ("privacy", "rounds", "says"),
    [  # 200,000 rounds sampling every site: the server's own accounting would not end in bounded memory
        ({"noise_multiplier": 1.0}, 200_000, "the PRV accountant composes at most 10,000 passes"),
        ({"epsilon": 1e-4}, 5, "ε = 0.0001 at δ = 1e-05 is too small for 5 steps"),
    ],
)
def test_central_dp_the_server_cannot_plan_stops_before_round_one(study, tmp_path, privacy, rounds, says):
    """Both once ended the server with a traceback."""
    study = with_federation(study, strategy="fedavg", min_sites=3, rounds=rounds)
    study = dataclasses.replace(study, privacy=PrivacyConfig(mode="central-server", **privacy))
    _, history = run_study(LocalGrid({1: site("a"), 2: site("b"), 3: site("c")}), study, StudyOutputs(tmp_path))
    assert history.status.startswith(f"stopped: central DP: {says}"), history.status
    assert not [r for r in history.rows if r["kind"] == "train"]


def test_fedadam_s_float64_model_travels_as_float32_and_the_saved_model_keeps_its_precision(study, tmp_path):
    """Flower's FedAdam aggregates in float64: sent as it is, every round's model took twice the bytes the sites'
    float32 models hold."""
    received: list[set] = []

    def recording(name: str):
        answer = site(name)

        def handle(msg: Message) -> Message:
            received.append({a.numpy().dtype for a in msg.content["arrays"].values()})
            return answer(msg)

        return handle

    study = with_federation(study, strategy="fedadam", min_sites=3, rounds=2)
    grid = LocalGrid({1: recording("a"), 2: recording("b"), 3: recording("c")})
    arrays, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    assert history.status == "completed" and len(received) == 9  # 2 rounds and the final evaluation, 3 sites
    assert all(dtypes == {np.dtype(np.float32)} for dtypes in received)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {np.dtype(np.float64)}  # the strategy's own, at full precision
