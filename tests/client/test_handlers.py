"""Site handlers: replies hold only model arrays and aggregates; bad input becomes a named refusal."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from client.admission import SITE_REFUSED, admit_model
from client.handlers import handle
from client.site import SiteConfig
from client.sitefile import SitePolicy
from shared.arrays import arrays_digest, model_arrays
from shared.assessment import FINAL_FLAG, RECORD, read_assessment
from shared.config import PrivacyConfig
from shared.tasks import build_model, get_task
from shared.tasks.counting import count_examples
from shared.tasks.footprint import model_footprint
from tests.conftest import with_federation
from tests.messages import assert_only_model_and_aggregates, server_message
from tests.shared.tasks.survival.tables import survival_study, survival_table, write


def test_train_reply_holds_only_weights_counts_and_metrics(study, demo_sites):
    reply = handle(server_message(study), demo_sites[0], train=True)
    assert not reply.has_error()
    assert_only_model_and_aggregates(reply, study)
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] > 0 and metrics["eval-num-examples"] > 0
    assert 0 <= metrics["eval-accuracy"] <= 1


def test_evaluate_reply_has_no_arrays(study, demo_sites):
    reply = handle(server_message(study, train=False), demo_sites[1], train=False)
    assert not reply.content.array_records
    assert "accuracy" in reply.content.metric_records["metrics"]


def test_the_final_evaluation_sends_intervals_and_bin_counts_only(study, demo_sites):
    plain = handle(server_message(study, train=False), demo_sites[1], train=False)
    assert RECORD not in plain.content.metric_records  # every round's evaluation stays cheap
    msg = server_message(study, train=False)
    msg.content["config"][FINAL_FLAG] = True
    reply = handle(msg, demo_sites[1], train=False)
    assert_only_model_and_aggregates(reply, study)
    metrics, assessment = reply.content.metric_records["metrics"], read_assessment(reply.content.metric_records[RECORD])
    assert assessment["ci-accuracy-low"] <= metrics["accuracy"] <= assessment["ci-accuracy-high"]
    assert sum(assessment["bins-positive"]) + sum(assessment["bins-negative"]) == metrics["num-examples"]
    assert assessment["bins-edges"][0] == 0 and assessment["bins-edges"][-1] == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda config, raw: config.__setitem__(FINAL_FLAG, "yes"), FINAL_FLAG),
        (lambda config, raw: raw["report"].__setitem__("min-cell", 1), "report.min-cell"),  # a hostile study
    ],
)
def test_a_final_flag_or_min_cell_out_of_bounds_is_refused_by_name(study, demo_sites, change, named):
    msg = server_message(study, train=False)
    raw = study.to_dict()
    change(msg.content["config"], raw)
    msg.content["config"]["study"] = json.dumps(raw)
    reply = handle(msg, demo_sites[1], train=False)
    assert reply.has_error() and named in reply.error.reason


def test_bad_data_is_refused_with_the_site_named(study, tmp_path):
    site = SiteConfig("hospital-9", tmp_path / "missing.csv")
    reply = handle(server_message(study), site, train=True)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert "hospital-9" in reply.error.reason and "missing.csv" in reply.error.reason


def test_weights_of_another_model_are_refused(study, demo_sites):
    other = dataclasses.replace(study, model={"name": "logreg"})
    foreign = model_arrays(get_task("tabular").build_model(other))
    reply = handle(server_message(study, arrays=foreign), demo_sites[0], train=True)
    assert reply.has_error() and "do not fit" in reply.error.reason and demo_sites[0].name in reply.error.reason


def test_node_config_without_data_path_uses_demo_split():
    site = SiteConfig.from_node_config({"partition-id": 1, "num-partitions": 3})
    assert site.name == "hospital-2" and site.data_path.is_file()


def test_dp_train_reply_still_holds_only_weights_and_aggregates(study, demo_sites, tmp_path):
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=3.0))
    site = dataclasses.replace(demo_sites[0], ledger_dir=tmp_path / "ledgers")
    reply = handle(server_message(private), site, train=True)
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert_only_model_and_aggregates(reply, private)
    metrics = reply.content.metric_records["metrics"]
    assert 0 < metrics["dp-epsilon"] < 3.0 and metrics["dp-noise-multiplier"] > 0
    assert list((tmp_path / "ledgers").iterdir())  # spent ε is on the site's disk before the update leaves


def test_site_cap_refuses_a_greedier_study(study, demo_sites, tmp_path):
    greedy = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=10.0))
    site = dataclasses.replace(demo_sites[0], ledger_dir=tmp_path, max_epsilon=2.0)
    reply = handle(server_message(greedy), site, train=True)
    assert reply.has_error() and "cap of 2.0" in reply.error.reason and site.name in reply.error.reason


@pytest.mark.parametrize("train", [True, False])
def test_a_model_too_large_for_the_site_is_refused_before_its_data_is_read_or_its_weights_allocated(
    study, tmp_path, train
):
    huge = dataclasses.replace(study, model={**study.model, "hidden": [50_000, 50_000]})  # 2.5 G parameters, 37 GiB
    site = SiteConfig("west", tmp_path / "never-read.csv")  # a site that read its data would name this file
    msg = server_message(huge, arrays=ArrayRecord({"w": Array(np.zeros(1, np.float32))}), train=train)
    reply = handle(msg, site, train=train)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert reply.error.reason.startswith(
        "site 'west' refuses study 'breast-cancer-demo': training its model (2,501,700,002 "
    )
    assert "policy.max-training-mib = 16384" in reply.error.reason
    roomy = dataclasses.replace(site, policy=dataclasses.replace(site.policy, max_training_mib=50_000))
    assert "never-read.csv" in handle(msg, roomy, train=train).error.reason  # past the cap: on to the data


def test_data_a_study_would_blow_up_past_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch, caplog):
    task = get_task("imaging")
    demo = task.demo_study()
    big = dataclasses.replace(demo, data={**demo.data, "image-size": 256})  # 28 px images held at 256 px
    site = SiteConfig("west", task.write_demo_sites(tmp_path, 3)[0])
    size = model_footprint(big)
    data_mib = size.data_mib(count_examples(site.data_path))
    assert data_mib > 100  # 208 images, each 256 KiB at this size, twice at the loader's peak
    tight = dataclasses.replace(site, policy=SitePolicy(max_training_mib=size.training_mib + data_mib / 2))
    monkeypatch.setattr("client.handlers.load_site_data", lambda *a: pytest.fail("the data was read"))
    reply = handle(server_message(big, arrays=ArrayRecord({"w": Array(np.zeros(1, np.float32))})), tight, train=True)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert "and this site's data, loaded at the study's sizes, more than the" in reply.error.reason
    assert "208" not in reply.error.reason  # the count stays in the site's own log
    assert "site 'west': its 208 examples would take about" in caplog.text
    roomy = dataclasses.replace(site, policy=SitePolicy(max_training_mib=size.training_mib + data_mib + 1))
    admit_model(big, roomy)


def test_a_model_past_torchs_sizes_is_a_named_refusal_not_an_internal_error(study, tmp_path):
    beyond = dataclasses.replace(study, model={**study.model, "hidden": [10**10, 10**10]})
    msg = server_message(beyond, arrays=ArrayRecord({"w": Array(np.zeros(1, np.float32))}))
    reply = handle(msg, SiteConfig("west", tmp_path / "never-read.csv"), train=True)
    assert reply.has_error() and "'model' is too large for a site to size its training" in reply.error.reason


def test_capped_site_refuses_a_study_without_local_dp(study, demo_sites, tmp_path):
    site = dataclasses.replace(demo_sites[0], ledger_dir=tmp_path, max_epsilon=3.0)
    reply = handle(server_message(study), site, train=True)  # the demo study has privacy.mode = "off"
    assert reply.has_error() and "only trains with local DP" in reply.error.reason and site.name in reply.error.reason
    assert not handle(server_message(study, train=False), site, train=False).has_error()  # evaluation is allowed


def test_a_repeated_round_resends_the_released_update_without_spending_again(study, demo_sites, tmp_path):
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=3.0))
    site = dataclasses.replace(demo_sites[0], ledger_dir=tmp_path / "ledgers")
    start = model_arrays(get_task("tabular").build_model(private))
    first = handle(server_message(private, arrays=start), site, train=True)
    journal = tmp_path / "ledgers" / f"{site.name}.journal.jsonl"
    ledger = journal.read_bytes()
    again = handle(server_message(private, arrays=start), site, train=True)  # the server died and resumed
    assert not again.has_error()
    assert journal.read_bytes() == ledger  # no new ε recorded
    sent, resent = first.content.array_records["arrays"], again.content.array_records["arrays"]
    assert all(np.array_equal(sent[k].numpy(), resent[k].numpy()) for k in sent)
    assert (
        again.content.metric_records["metrics"]["dp-epsilon"] == first.content.metric_records["metrics"]["dp-epsilon"]
    )
    moved = ArrayRecord({k: Array(v.numpy() + 0.01) for k, v in start.items()})  # another starting model
    fresh = handle(server_message(private, arrays=moved), site, train=True)
    assert fresh.content.metric_records["metrics"]["dp-epsilon"] > first.content.metric_records["metrics"]["dp-epsilon"]


def slow_steps(monkeypatch, seconds: float, task_name: str = "tabular") -> list[float]:
    """Every training step of the task takes `seconds` longer; returns the steps' start times."""
    steps = []
    task = get_task(task_name)
    loss = task.train_loss

    def slow_loss(study, train):
        inner = loss(study, train)

        def timed(logits, y):
            steps.append(time.perf_counter())
            time.sleep(seconds)
            return inner(logits, y)

        return timed

    monkeypatch.setattr(type(task), "train_loss", lambda self, study, train: slow_loss(study, train))
    return steps


@pytest.mark.parametrize("task_name", ["tabular", "imaging"])  # segmentation trains through the same loop
def test_a_round_that_cannot_fit_the_round_timeout_is_refused_early_by_name(task_name, tmp_path, monkeypatch):
    task = get_task(task_name)
    demo = task.demo_study()
    # 2 epochs of batches of 8: at least 12 batches (tabular) of >= 0.2 s each need >= 2.4 s
    study = dataclasses.replace(demo, train=dataclasses.replace(demo.train, batch_size=8, local_epochs=2))
    study = with_federation(study, round_timeout=2.0)
    site = SiteConfig("hospital-1", task.write_demo_sites(tmp_path / "sites", 3)[0])
    steps = slow_steps(monkeypatch, 0.2, task_name)
    reply = handle(server_message(study), site, train=True)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert re.fullmatch(
        r"site 'hospital-1': this round would take about \d+ s \(2 local epoch\(s\), \d+ batches, timed over the "
        r"first ones\), past federation.round-timeout = 2 s; not training it \(fewer local epochs or rows per round, "
        r"a GPU, or a longer limit would fit\)",
        reply.error.reason,
    ), reply.error.reason
    estimate = int(re.search(r"about (\d+) s", reply.error.reason).group(1))
    assert estimate >= 2
    # Said early: after a warm-up batch and three timed ones, of 12 batches or more.
    assert len(steps) == 1 + 3


def test_a_site_bounds_a_round_whatever_timeout_the_study_sets(tmp_path, monkeypatch):
    task = get_task("tabular")
    demo = task.demo_study()
    study = dataclasses.replace(demo, train=dataclasses.replace(demo.train, batch_size=8, local_epochs=2))
    study = with_federation(study, round_timeout=1e9)  # a study that would hold the site's machine for 30 years
    site = SiteConfig("hospital-1", task.write_demo_sites(tmp_path / "sites", 3)[0])
    site = dataclasses.replace(site, policy=SitePolicy(max_round_minutes=2.0 / 60))
    steps = slow_steps(monkeypatch, 0.2)
    reply = handle(server_message(study), site, train=True)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert "past this site's policy.max-round-minutes = 0.0333333; not training it" in reply.error.reason
    assert len(steps) == 1 + 3


def test_a_round_that_fits_trains_as_usual(study, demo_sites, monkeypatch):
    steps = slow_steps(monkeypatch, 0.0)
    reply = handle(server_message(with_federation(study, round_timeout=60.0)), demo_sites[0], train=True)
    assert not reply.has_error()
    trained = int(reply.content["metrics"]["num-examples"])  # the train split, less the site's validation rows
    assert len(steps) == study.train.local_epochs * math.ceil(trained / study.train.batch_size)


def test_a_site_whose_journal_was_deleted_refuses_without_revealing_its_files(study, demo_sites, tmp_path):
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=3.0))
    site = dataclasses.replace(demo_sites[0], ledger_dir=tmp_path / "ledgers")
    assert not handle(server_message(private), site, train=True).has_error()
    site.ledger_files().journal.unlink()
    renamed = dataclasses.replace(private, name="renamed-study")
    reply = handle(server_message(renamed), site, train=True)
    assert reply.has_error() and site.name in reply.error.reason and "cannot be trusted" in reply.error.reason
    assert str(tmp_path) not in reply.error.reason and ".journal" not in reply.error.reason


def test_a_survival_site_without_train_events_sits_training_out_when_the_study_says_and_still_evaluates(tmp_path):
    table = survival_table(80)
    table["died"] = 0
    ledgers = tmp_path / "ledgers"
    site = SiteConfig("h1", write(table, tmp_path), ledger_dir=ledgers)
    study = survival_study("discrete", **{"too-few": "sit-out"})
    private = dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=3.0))
    trained = handle(server_message(private), site, train=True)
    assert trained.has_error() and trained.error.code == SITE_REFUSED
    assert trained.error.reason.startswith("site 'h1' sits training out")
    assert [f.parent.name for f in ledgers.rglob("*") if f.is_file()] == ["kept"]  # no journal: no ε spent
    evaluated = handle(server_message(study, train=False), site, train=False)
    assert not evaluated.has_error(), evaluated.error.reason if evaluated.has_error() else ""
    assert evaluated.content.metric_records["metrics"]["num-examples"] > 0
    refused = handle(server_message(survival_study("discrete"), train=False), site, train=False)
    assert refused.has_error() and "fewer events in its train split" in refused.error.reason  # the default


def test_a_setup_answer_holds_only_event_counts_on_the_studys_grid_and_a_needless_or_oversized_query_is_refused(
    tmp_path,
):
    site = SiteConfig("h1", write(survival_table(120), tmp_path), ledger_dir=tmp_path / "ledgers")

    def query(study) -> Message:
        content = RecordDict({"config": ConfigRecord({"study": study.to_json()})})
        return handle(Message(content, dst_node_id=1, message_type=MessageType.QUERY), site, train=False)

    grid = {"cut-points": [], "cut-grid-max": 3000.0, "cut-grid-bins": 60}
    reply = query(survival_study("discrete", **grid))
    assert not reply.content.array_records and set(reply.content.config_records["site"]) == {"name"}
    metrics = reply.content.metric_records["metrics"]
    assert set(metrics) == {"num-examples", "event-histogram"}
    counts = metrics["event-histogram"]
    assert len(counts) == 60 and all(isinstance(c, int) and c >= 0 for c in counts)
    assert 0 < sum(counts) <= int(survival_table(120)["died"].sum())  # the train split's events only
    for study, reason in (
        (survival_study("discrete"), "asks a setup question it does not need"),
        (survival_study("discrete", **{**grid, "cut-grid-bins": 100_000}), "data.cut-grid-bins"),
    ):
        refused = query(study)
        assert refused.error.code == SITE_REFUSED and reason in refused.error.reason
    site = dataclasses.replace(site, max_epsilon=3.0)  # a site that releases only under local DP
    refused = query(survival_study("discrete", **grid))
    assert refused.error.code == SITE_REFUSED and "list data.cut-points in the study instead" in refused.error.reason


def test_an_evaluation_only_study_is_scored_only_on_its_pinned_model_and_never_trained(study, demo_sites, tmp_path):
    arrays = model_arrays(build_model(study))
    pin = arrays_digest(arrays)
    evaluation = with_federation(study, rounds=0, initial_model="m.safetensors", initial_model_sha256=pin)
    assert not handle(server_message(evaluation, train=False, arrays=arrays), demo_sites[0], train=False).has_error()
    other = ArrayRecord({k: Array(v.numpy() + 1) for k, v in arrays.items()})
    # The check comes before the site reads a row: a site whose data is gone is refused for the model, not the data.
    gone = SiteConfig("hospital-9", tmp_path / "missing.csv")
    refused = handle(server_message(evaluation, train=False, arrays=other), gone, train=False)
    assert refused.has_error() and refused.error.code == SITE_REFUSED
    assert f"weights have SHA-256 {arrays_digest(other)}, not the initial model" in refused.error.reason
    assert pin in refused.error.reason and "missing.csv" not in refused.error.reason
    trained = handle(server_message(evaluation, arrays=arrays), demo_sites[0], train=True)
    assert trained.has_error() and "only evaluates its initial model (federation.rounds = 0)" in trained.error.reason


def test_round_one_of_a_study_from_an_initial_model_must_carry_it(study, demo_sites):
    arrays = model_arrays(build_model(study))
    warm = with_federation(study, initial_model="m.safetensors", initial_model_sha256=arrays_digest(arrays))
    other = ArrayRecord({k: Array(v.numpy() * 0.5) for k, v in arrays.items()})
    assert not handle(server_message(warm, arrays=arrays), demo_sites[0], train=True).has_error()
    first = handle(server_message(warm, arrays=other), demo_sites[0], train=True)
    assert first.has_error() and "not the initial model study" in first.error.reason
    later = server_message(warm, arrays=other)
    later.content["config"]["server-round"] = 2  # the aggregate of round 1: no site can check it
    assert not handle(later, demo_sites[0], train=True).has_error()
