"""`medfed-site`: the local pre-flight check and the privacy audit, with clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from client.cli import cli
from server.outputs import StudyOutputs
from shared.arrays import model_arrays
from shared.config import StudyConfig
from shared.tasks import build_model
from tests.shared.tasks.imaging import test_data as imaging


def write_study(tmp_path, study):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study.to_dict()))
    return path


def test_check_prints_a_local_report(tmp_path, study, demo_sites):
    result = CliRunner().invoke(
        cli,
        [
            "check",
            "--data",
            str(demo_sites[0].data_path),
            "--study",
            str(write_study(tmp_path, study)),
            "--site",
            "hospital-1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "class-counts" in result.output and "ready" in result.output


def test_check_names_what_is_wrong(tmp_path, study):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(
        cli, ["check", "--data", str(bad), "--study", str(write_study(tmp_path, study)), "--site", "hospital-9"]
    )
    assert result.exit_code == 2
    assert "hospital-9" in result.output and "bad.csv" in result.output and "diagnosis" in result.output


def audit(tmp_path, study, data_path, trained_as):
    """Run `medfed-site audit` on a model saved by a study shaped like `trained_as`."""
    model = StudyOutputs(tmp_path / "run").save_model("model.safetensors", model_arrays(build_model(trained_as)))
    args = ["audit", "--data", str(data_path), "--study", str(write_study(tmp_path, study)), "--model", str(model)]
    return CliRunner().invoke(cli, args)


def test_audit_reports_attack_auc(tmp_path, study, demo_sites):
    result = audit(tmp_path, study, demo_sites[0].data_path, trained_as=study)
    assert result.exit_code == 0, result.output
    assert "membership-inference attack AUC 0." in result.output


def test_audit_refuses_a_foreign_model(tmp_path, study, demo_sites):
    other = dataclasses.replace(study, model={"name": "logreg"})
    result = audit(tmp_path, study, demo_sites[0].data_path, trained_as=other)
    assert result.exit_code == 2 and "is not this study's model" in result.output


def test_check_with_a_site_config_describes_the_data_without_a_study(tmp_path, demo_sites):
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{demo_sites[0].data_path}"\ntask = "tabular"\nlabel = "diagnosis"\n'
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "pre-flight report for site 'north'" in result.output and "class-counts" in result.output
    missing = CliRunner().invoke(cli, ["start", "--config", str(config)])
    assert missing.exit_code == 2 and "ca.crt from the site kit is missing" in missing.output


@pytest.mark.parametrize(
    ("on_corrupt", "exit_code", "says"), [("skip", 0, "'bomb.png'"), ("fail", 2, "decompression bomb")]
)
def test_check_skips_or_refuses_a_decompression_bomb_by_name(tmp_path, on_corrupt, exit_code, says):
    folder = imaging.image_folder(tmp_path, extra_rows=["bomb.png,1"])
    imaging.bomb_png(folder / "bomb.png", 20_000, 20_000)
    study = StudyConfig.from_dict(
        {"task": "imaging", "data": {"classes": [0, 1], "image-size": 16, "on-corrupt": on_corrupt, "min-rows": 10}}
    )
    args = ["check", "--data", str(folder), "--study", str(write_study(tmp_path, study)), "--site", "hospital-4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code, result.output
    assert says in result.output and ("not ready" in result.output) == (on_corrupt == "fail")
