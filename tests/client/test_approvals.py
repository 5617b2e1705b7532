"""Site approval of studies: only a study approved here, as it travels, reaches the data; the setup step's values
are the one thing the server may fill in afterwards."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest
from typer.testing import CliRunner

from client.admission import admit
from client.approvals import approval_of, approve, check_approved, load_approvals, revoke
from client.cli import cli
from client.site import SiteConfig
from client.sitefile import load_site_file
from shared.config import KNOWN_TASKS, PrivacyConfig, StudyConfig, load_study
from shared.errors import ConfigError, PolicyError
from shared.tasks import get_task
from shared.tasks.survival import TASK as SURVIVAL
from tests.shared.tasks.survival.tables import survival_study

GRID = {"cut-points": [], "cut-grid-max": 3000.0, "cut-grid-bins": 300, "cut-intervals": 8}


@pytest.mark.parametrize("task", KNOWN_TASKS)
def test_a_study_has_the_same_digest_after_its_trip_over_the_wire(task):
    study = get_task(task).demo_study()
    assert StudyConfig.from_json(study.to_json()).digest() == study.digest() and len(study.digest()) == 64
    run_config = tomllib.loads(f"study-json = {json.dumps(study.to_json())}\n")  # how `submit` hands it to Flower
    assert StudyConfig.from_run_config(run_config).digest() == study.digest()


def test_a_study_built_in_code_has_the_digest_of_its_parsed_form():
    study = get_task("tabular").demo_study()
    built = dataclasses.replace(study, federation=dataclasses.replace(study.federation, round_timeout=60))  # an int
    assert built.to_json() != StudyConfig.from_json(built.to_json()).to_json()  # 60 on one side, 60.0 on the other
    assert built.digest() == StudyConfig.from_json(built.to_json()).digest()


def test_only_the_approved_study_is_admitted_and_any_change_is_another_study(tmp_path):
    path = tmp_path / "approved-studies.json"
    study = get_task("tabular").demo_study()
    with pytest.raises(PolicyError, match=rf"site 'north' refuses study .* \(sha256 {study.digest()[:16]}…\) is not"):
        check_approved(study, "north", path)
    entry = approve(path, study, "IRB 2026-114")
    assert entry["sha256"] == study.digest() and entry["note"] == "IRB 2026-114" and entry["by"]
    check_approved(study, "north", path)
    check_approved(StudyConfig.from_json(study.to_json()), "north", path)  # as the server sends it
    changed = [
        dataclasses.replace(
            study, federation=dataclasses.replace(study.federation, rounds=study.federation.rounds + 1)
        ),
        dataclasses.replace(study, privacy=PrivacyConfig(mode="local", epsilon=8.0)),
        dataclasses.replace(study, name="other-name"),
    ]
    for other in changed:
        with pytest.raises(PolicyError, match="is not among them"):
            check_approved(other, "north", path)
    with pytest.raises(ConfigError, match="is already approved"):
        approve(path, study, "again")
    with pytest.raises(ConfigError, match=rf"no study named 'breast' is approved here \(approved: {study.name}\)"):
        revoke(path, "breast")  # misspelt: the approval stands, and the operator is told
    assert revoke(path, study.name) == 1 and load_approvals(path) == []
    with pytest.raises(PolicyError):
        check_approved(study, "north", path)
    assert oct(path.stat().st_mode)[-3:] == "600"


def test_a_study_the_server_completes_is_admitted_completed_and_only_with_its_own_settings(tmp_path):
    path = tmp_path / "approved-studies.json"
    study = survival_study("discrete", **GRID)  # its cut points come from the federated setup step
    approve(path, study, "")
    assert approval_of(study, path) is not None  # the setup query itself
    completed = dataclasses.replace(study, data={**study.data, "cut-points": [100.0, 400.0, 900.0]})
    assert not SURVIVAL.needs_setup(completed) and approval_of(completed, path) is not None
    more_rounds = dataclasses.replace(completed, federation=dataclasses.replace(completed.federation, rounds=9))
    assert approval_of(more_rounds, path) is None
    fixed = survival_study("discrete", **{**GRID, "cut-points": [100.0, 400.0]})  # approved with its cut points
    other = tmp_path / "other.json"
    approve(other, fixed, "")
    moved = dataclasses.replace(fixed, data={**fixed.data, "cut-points": [150.0, 400.0]})
    assert approval_of(fixed, other) is not None and approval_of(moved, other) is None


def test_a_damaged_approvals_file_is_an_error_not_an_empty_list(tmp_path):
    path = tmp_path / "approved-studies.json"
    for text in ("{not json", json.dumps({"sha256": "x"}), json.dumps([{"study": "x"}])):
        path.write_text(text)
        with pytest.raises(ConfigError, match="approved-studies.json"):
            load_approvals(path)


def site_toml(tmp_path, require: bool):
    data = get_task("tabular").write_demo_sites(tmp_path / "data", 2)[0]
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "north"\nserver = "127.0.0.1:9"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{data}"\ntask = "tabular"\nlabel = "diagnosis"\n'
        f"[policy]\nrequire-approval = {str(require).lower()}\n"
    )
    return path


def test_a_site_requiring_approval_refuses_what_it_has_not_approved_and_check_says_so(tmp_path):
    config = site_toml(tmp_path, require=True)
    study_file = tmp_path / "study.json"
    study = get_task("tabular").demo_study()
    study_file.write_text(study.to_json())
    site = SiteConfig.from_site_file(load_site_file(config))
    assert site.approvals == tmp_path / "approved-studies.json"
    with pytest.raises(PolicyError, match="not among them"):
        admit(study, site, train=False)  # an evaluation too: nothing of the data is used for it
    runner = CliRunner()
    checked = runner.invoke(cli, ["check", "--config", str(config), "--study", str(study_file)])
    said = " ".join(checked.output.split())
    assert checked.exit_code == 0 and f"approval: not approved here (sha256 {study.digest()})" in said
    approved = runner.invoke(cli, ["approve", "--config", str(config), "--study", str(study_file), "--note", "IRB 7"])
    assert approved.exit_code == 0 and f"sha256 {load_study(study_file).digest()}" in approved.output
    admit(study, site, train=True)
    status = runner.invoke(cli, ["status", "--config", str(config)])
    assert f"approved studies (policy.require-approval): {study.name}" in status.output
    checked = runner.invoke(cli, ["check", "--config", str(config), "--study", str(study_file)])
    assert "approval: approved " in checked.output and "(IRB 7)" in checked.output
    misspelt = runner.invoke(cli, ["approve", "--config", str(config), "--revoke", "[/x]"])  # not markup either
    assert misspelt.exit_code == 2 and "'--revoke' no study named '[/x]' is approved here" in misspelt.output
    withdrawn = runner.invoke(cli, ["approve", "--config", str(config), "--revoke", study.name])
    assert withdrawn.exit_code == 0 and "withdrew 1 approval(s)" in withdrawn.output
    with pytest.raises(PolicyError):
        admit(study, site, train=True)


def test_a_site_that_does_not_require_approval_admits_as_before_and_approving_says_so(tmp_path):
    config = site_toml(tmp_path, require=False)
    study = get_task("tabular").demo_study()
    site = SiteConfig.from_site_file(load_site_file(config))
    assert site.approvals is None
    admit(study, site, train=True)
    study_file = tmp_path / "study.json"
    study_file.write_text(study.to_json())
    approved = CliRunner().invoke(cli, ["approve", "--config", str(config), "--study", str(study_file)])
    assert approved.exit_code == 0 and "policy.require-approval is false" in " ".join(approved.output.split())
