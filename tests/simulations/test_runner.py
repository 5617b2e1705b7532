"""Virtual sites share a pool of Ray actors sized to the machine; many sites still give short round lines, quiet
output, and each round's peak memory in the history."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SimulationConfig
from simulations.runner import LOG_FILE, backend_config, pool_size
from simulations.scenario import network_table

BIN = Path(sys.executable).parent
CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("workers", "sites", "expected"),
    [(0, 3, min(3, CORES)), (0, 100, CORES), (0, 1, 1), (5, 100, 5), (5, 2, 5)],
)
def test_the_pool_is_sized_by_the_cores_not_the_sites(workers, sites, expected, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS")
    settings = SimulationConfig(workers=workers)
    assert pool_size(settings, sites) == expected
    init = backend_config(settings, sites, verbose=False)["init_args"]
    assert init["num_cpus"] == expected and init["address"] == "local"  # never joins another Ray on the machine


def test_on_a_ray_cluster_its_cpus_size_the_pool():
    init = backend_config(SimulationConfig(ray_address="10.0.0.5:6379"), 100, verbose=False)["init_args"]
    assert init["address"] == "10.0.0.5:6379" and "num_cpus" not in init  # Ray refuses num_cpus when joining


def test_rays_own_address_variable_joins_its_cluster_unless_the_study_names_one(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.6:6379")
    assert backend_config(SimulationConfig(), 3, verbose=False)["init_args"]["address"] == "10.0.0.6:6379"
    named = SimulationConfig(ray_address="10.0.0.5:6379")
    assert backend_config(named, 3, verbose=False)["init_args"]["address"] == "10.0.0.5:6379"


def test_other_libraries_deprecation_warnings_stay_hidden_after_flowers_simulation_is_imported():
    warn = "warnings.warn_explicit('old', DeprecationWarning, 'lib.py', 1, module='lib')"  # as a library warns
    warn = f"import warnings, simulations.runner; {warn}"
    result = subprocess.run([sys.executable, "-c", warn], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "DeprecationWarning" not in result.stderr, result.stderr


def test_thirty_sites_share_the_cores_actors_and_the_output_stays_readable(tmp_path):
    path = tmp_path / "national.csv"
    network_table(sites=30, rows=40).to_csv(path, index=False)
    out = tmp_path / "run"
    command = [str(BIN / "medfed-sim"), "--data", str(path), "--label", "outcome", "--site-column", "hospital"]
    command += ["--rounds", "1", "--no-baselines", "--out", str(out)]
    local = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}  # a Ray of its own
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=local)
    assert result.returncode == 0, result.stdout + result.stderr
    history = json.loads((out / "history.json").read_text())
    assert history["status"] == "completed"
    assert [t["accepted"] for t in history["timings"]] == [30]
    # Flower's own record of the pool it built, now in the run's log file rather than on the terminal.
    log = (out / LOG_FILE).read_text()
    pools = re.findall(r"Constructed ActorPool with: (\d+) actors", log)
    assert pools == [str(min(30, CORES))]
    # One format throughout: Ray's start would otherwise put its own on the handler that the loggers share.
    records = re.findall(r"(?m)^\d{4}-\d\d-\d\d .*$", log)
    assert records and all(re.match(r"[\d-]+ [\d:,]+ (flwr|ray|medfed)\S* [A-Z]+: ", line) for line in records), log
    assert all(
        0.1 < t["peak-total-gib"] < 16 and t["peak-process-gib"] <= t["peak-total-gib"] for t in history["timings"]
    )
    rounds = [line for line in result.stdout.splitlines() if line.startswith("round ")]
    assert len(rounds) == 1 and all(len(line) < 160 for line in rounds)
    assert "took part: h" in result.stdout and "and 24 more" in result.stdout
    assert "each site's row is in summary.json" in result.stdout
    output = result.stdout + result.stderr
    assert not re.search(r"\(raylet\)|worker processes have been started|WARNING.*ray|ray.*WARNING", output)
    # The server loop's own summary is the log file's, whether or not a module imported Opacus (whose
    # logging.basicConfig would otherwise print it on the terminal, in its own format).
    assert "medfed.server INFO: study 'national" in log
    assert "INFO" not in output and "study 'national" not in output
