"""The closing summary that ends `medfed-server submit`'s stream: status, final metrics, ε, each site's reasons."""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import Error, Message

from server.history import History
from server.loop import run_study
from server.outputs import StudyOutputs
from server.summary import summary_lines
from shared.config import FederationConfig
from tests.conftest import with_federation
from tests.grid import LocalGrid
from tests.server.test_loop import site

FEDERATION = FederationConfig()
REFUSAL = "site 'west' refuses study 's': asks for ε = 3.0, above this site's cap of 2.0"


def finished_history() -> History:
    history = History(status="completed")
    for rnd in (1, 2):
        history.add_metrics(rnd, "train", {"north": {"num-examples": 30, "dp-epsilon": 1.5 * rnd}}, FEDERATION)
        history.add_events(rnd, [{"site": "west", "event": "refused", "reason": REFUSAL}])
    history.add_metrics(
        2,
        "eval",
        {
            "north": {"num-examples": 30, "accuracy": 0.9, "roc-auc": 0.95},
            "south": {"num-examples": 10, "accuracy": 0.5, "roc-auc": 0.75},
        },
        FEDERATION,
    )
    history.add_events(2, [{"site": "-", "event": "resumed", "reason": "after round 1"}])
    return history


def test_the_summary_states_status_outputs_metrics_epsilon_and_each_reason_once():
    lines = summary_lines("s", finished_history(), Path("/srv/outputs/s-1"), ("accuracy", "roc-auc"))
    assert lines[:2] == ["study 's' completed", "outputs: /srv/outputs/s-1"]
    table = {line.split()[0]: line.split()[1:] for line in lines[4:7]}
    assert lines[3].split() == ["site", "accuracy", "roc-auc", "num-examples", "ε", "spent"]
    assert table["north"] == ["0.900", "0.950", "30", "3.000"]
    assert table["south"] == ["0.500", "0.750", "10", "-"]
    assert table["weighted"] == ["0.800", "0.900", "40", "-"]
    assert lines[-2:] == ["site events:", f"  west refused (rounds 1, 2): {REFUSAL}"]
    assert all(len(line) <= 80 for line in lines if not line.startswith("  west"))


def test_a_site_refusing_two_stages_of_one_round_is_said_once_for_that_round():
    history = History(status="completed")
    history.add_events(1, [{"site": "west", "event": "refused", "reason": REFUSAL}] * 2)  # setup, final evaluation
    lines = summary_lines("s", history, Path("/srv/outputs/s-1"), ("accuracy",))
    assert lines[-1] == f"  west refused (round 1): {REFUSAL}"


def test_a_study_every_site_refuses_ends_its_log_with_the_stop_and_each_reason(study, tmp_path, caplog):
    def refuses(name: str):
        return lambda msg: Message(Error(code=4001, reason=f"site '{name}' refuses study: policy"), reply_to=msg)

    study = with_federation(study, strategy="fedavg", min_sites=2, rounds=2)
    grid = LocalGrid({11: refuses("north"), 12: refuses("south"), 13: site("east")})
    with caplog.at_level(logging.INFO, logger="medfed.server"):
        _, history = run_study(grid, study, StudyOutputs(tmp_path / "run"))
    logged = [r.getMessage() for r in caplog.records]
    assert history.status.startswith("stopped: round 1: only 1 usable update(s)")
    assert f"study '{study.name}' {history.status}" in logged
    assert f"outputs: {(tmp_path / 'run').resolve()}" in logged
    assert "  north refused (round 1): site 'north' refuses study: policy" in logged
    assert "  refused: south: site 'south' refuses study: policy" in logged  # the round's own line, as it happens
