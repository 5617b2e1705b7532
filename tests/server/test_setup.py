"""The federated setup step before round 1: a discrete-time study without cut points gets them from the sites'
event-time histograms, a hostile answer is left out by name, and too few usable answers stop the study cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from client.handlers import handle
from client.site import SiteConfig, load_site_data
from server.loop import run_study
from server.outputs import StudyOutputs
from shared.tasks.survival.cuts import HISTOGRAM, event_histogram, quantile_cuts
from shared.tasks.survival.spec import data_spec
from tests.conftest import with_federation
from tests.grid import LocalGrid
from tests.shared.tasks.survival.tables import survival_study, survival_table, write

GRID = {"cut-points": [], "cut-grid-max": 3000.0, "cut-grid-bins": 100, "cut-intervals": 5}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> list[SiteConfig]:
    """Three generated hospitals' survival tables."""
    folder = tmp_path_factory.mktemp("survival-sites")
    return [
        SiteConfig(f"h{i}", write(survival_table(n, seed=i), folder, f"h{i}.csv"), ledger_dir=folder / "ledgers")
        for i, n in enumerate((150, 100, 80), start=1)
    ]


def honest(site: SiteConfig):
    """A site answering every message with medfed's own handler."""
    return lambda msg: handle(msg, site, train=msg.metadata.message_type == MessageType.TRAIN)


def hostile(site: SiteConfig):
    """A site whose setup answer is a histogram of the wrong length; it trains honestly."""

    def answer(msg: Message) -> Message:
        if msg.metadata.message_type != MessageType.QUERY:
            return honest(site)(msg)
        metrics = MetricRecord({"num-examples": 10, HISTOGRAM: [1, 2, 3]})
        return Message(RecordDict({"metrics": metrics, "site": ConfigRecord({"name": site.name})}), reply_to=msg)

    return answer


def study(tmp_path, min_sites: int):
    """A one-round discrete-time study leaving its cut points to the setup step."""
    base = survival_study("discrete", **GRID)
    return with_federation(base, strategy="fedavg", rounds=1, min_sites=min_sites)


def test_the_server_completes_the_study_with_cut_points_from_the_sites_histograms(sites, tmp_path):
    chosen = study(tmp_path, 3)
    arrays, history = run_study(
        LocalGrid({i: honest(s) for i, s in enumerate(sites, 1)}), chosen, StudyOutputs(tmp_path)
    )
    assert history.status == "completed"
    spec = data_spec(chosen)
    summed = np.sum([event_histogram(spec, load_site_data(s, chosen).train.tensors[1]) for s in sites], axis=0)
    cuts = json.loads((tmp_path / "study.json").read_text())["data"]["cut-points"]
    assert cuts == quantile_cuts(spec, summed) and len(cuts) == 5
    assert arrays[list(arrays)[-1]].numpy().shape == (5,)  # the hazard layer's bias: one logit per interval


def test_a_hostile_answer_is_left_out_by_name_and_too_few_answers_stop_the_study(sites, tmp_path):
    grid = LocalGrid({1: honest(sites[0]), 2: honest(sites[1]), 3: hostile(sites[2])})
    _, history = run_study(grid, study(tmp_path, 3), StudyOutputs(tmp_path))
    rejected = [e for e in history.events if e["event"] == "rejected"]
    assert rejected and rejected[0]["site"] == "h3" and "must list 100 counts" in rejected[0]["reason"]
    assert history.status == "stopped: setup: only 2 usable answer(s), federation.min-sites is 3"
    assert not (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "history.json").read_text())["status"] == history.status


def test_a_resumed_study_keeps_its_first_runs_cut_points_without_asking_the_sites_again(sites, tmp_path):
    chosen = with_federation(study(tmp_path, 3), rounds=2)
    trains = []

    def crashing(site: SiteConfig):
        """An honest site; the server process dies when round 2's first training message goes out."""

        def answer(msg: Message) -> Message:
            if msg.metadata.message_type == MessageType.TRAIN:
                trains.append(site.name)
                if len(trains) > len(sites):
                    raise KeyboardInterrupt  # the server killed mid-study: round 1's state is saved
            return honest(site)(msg)

        return answer

    with pytest.raises(KeyboardInterrupt):
        run_study(LocalGrid({i: crashing(s) for i, s in enumerate(sites, 1)}), chosen, StudyOutputs(tmp_path))
    cuts = json.loads((tmp_path / "study.json").read_text())["data"]["cut-points"]
    # Since then a hospital added patients: asked again, the sites would put the cut points elsewhere.
    grown = SiteConfig(
        "h3", write(survival_table(160, seed=9), tmp_path, "h3-grown.csv"), ledger_dir=sites[2].ledger_dir
    )
    queries = []

    def counting(site: SiteConfig):
        def answer(msg: Message) -> Message:
            if msg.metadata.message_type == MessageType.QUERY:
                queries.append(site.name)
            return honest(site)(msg)

        return answer

    grid = LocalGrid({i: counting(s) for i, s in enumerate([*sites[:2], grown], 1)})
    _, history = run_study(grid, chosen, StudyOutputs(tmp_path))
    assert history.status == "completed" and queries == []
    assert [e["reason"] for e in history.events if e["event"] == "resumed"] == ["after round 1"]
    assert json.loads((tmp_path / "study.json").read_text())["data"]["cut-points"] == cuts
