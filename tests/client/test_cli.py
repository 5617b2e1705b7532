"""`medfed-site`: the local pre-flight check (a multimodal table's modalities too) and the privacy audit, with clear
errors."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.cli import cli
from server.outputs import StudyOutputs
from shared.arrays import model_arrays
from shared.config import StudyConfig
from shared.tasks import build_model, get_task
from shared.tasks.counting import count_examples
from shared.tasks.footprint import model_footprint
from tests.shared.tasks.imaging import test_data as imaging
from tests.shared.tasks.multimodal.patients import matrix_study, write_matrix_site


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


def test_audit_reads_the_site_from_its_site_toml_or_asks_for_it(tmp_path, study, demo_sites):
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{demo_sites[0].data_path}"\ntask = "tabular"\nlabel = "diagnosis"\n'
    )
    model = StudyOutputs(tmp_path / "run").save_model("model.safetensors", model_arrays(build_model(study)))
    args = ["audit", "--study", str(write_study(tmp_path, study)), "--model", str(model)]
    result = CliRunner().invoke(cli, [*args, "--config", str(config)])
    assert result.exit_code == 0 and "site 'north': membership-inference attack AUC 0." in result.output, result.output
    neither = CliRunner().invoke(cli, args)
    assert neither.exit_code == 2 and "give --config site.toml, or --data (and --site)" in neither.output


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


def test_check_against_a_study_applies_the_sites_memory_cap_before_loading(tmp_path, demo_sites):
    raw = {**get_task("tabular").demo_study().to_dict(), "name": "s", "privacy": {"mode": "local", "epsilon": 3.0}}
    study = StudyConfig.from_dict(raw)
    size = model_footprint(study)
    cap = size.training_mib + size.data_mib(count_examples(demo_sites[0].data_path)) / 2  # the model fits, not the data
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{demo_sites[0].data_path}"\ntask = "tabular"\nlabel = "diagnosis"\n'
        f"[policy]\nmax-training-mib = {cap!r}\n"
    )
    command = [str(Path(sys.executable).parent / "medfed-site"), "check", "--config", str(config)]
    result = subprocess.run(
        [*command, "--study", str(write_study(tmp_path, study))], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "not ready: site 'north' refuses study 's'" in result.stdout, result.stdout
    assert "and this site's data, loaded at the study's sizes, more than the" in result.stdout
    # the count, for the site's own eyes, in medfed's format although the study's local DP loaded Opacus
    assert re.search(r"(?m)^ERROR medfed.site: site 'north': its \d+ examples would take about", result.stderr), (
        result.stderr
    )


@pytest.mark.parametrize(
    ("policy", "privacy", "says"),
    [
        ("max-epsilon = 3.0", {"mode": "local", "epsilon": 8.0}, "the study asks for ε = 8.0, above this site's cap"),
        ('tasks = ["imaging"]', {}, "task 'tabular' is not among this site's accepted tasks ['imaging']"),
        ("max-epsilon = 3.0", {}, "this site only trains with local DP within its ε caps"),
        ("max-delta = 0", {"mode": "local", "epsilon": 3.0, "delta": 0.01}, "asks for δ = 0.01, above this site's cap"),
    ],
)
def test_check_against_a_study_says_when_the_sites_policy_would_refuse_it(tmp_path, demo_sites, policy, privacy, says):
    """It said "ready: the data fits the study" for a study the site's agent then refused every round."""
    study = StudyConfig.from_dict({**get_task("tabular").demo_study().to_dict(), "name": "s", "privacy": privacy})
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{demo_sites[0].data_path}"\ntask = "tabular"\nlabel = "diagnosis"\n[policy]\n{policy}\n'
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(config), "--study", str(write_study(tmp_path, study))])
    assert result.exit_code == 2 and says in " ".join(result.output.split()), result.output
    assert "ready: the data fits" not in result.output


def test_check_against_a_study_it_admits_says_what_it_would_cost_the_site(tmp_path, demo_sites):
    """The IT team's question before round 1: how much of its patients' budget and its memory would the study take?"""
    raw = get_task("tabular").demo_study().to_dict()
    private = {**raw, "name": "s", "privacy": {"mode": "local", "epsilon": 3.0}}
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n[data]\npath = "{demo_sites[0].data_path}"\n'
        'task = "tabular"\nlabel = "diagnosis"\n[policy]\nmax-epsilon = 8.0\nlifetime-epsilon = 20.0\n'
    )
    result = CliRunner().invoke(
        cli, ["check", "--config", str(config), "--study", str(write_study(tmp_path, StudyConfig.from_dict(private)))]
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "ready: the data fits the study" in text, result.output
    study = re.search(
        r"privacy: the study's 10 rounds would spend ε ([\d.]+) of this site's patients at δ = 1e-05 "
        r"\(its target 3, this site's cap per study 8\)",
        text,
    )
    lifetime = re.search(
        r"lifetime: all studies on this data have spent ε 0\.000, and ([\d.]+) with this one "
        r"\(its lifetime cap 20, δ = ",
        text,
    )
    assert study and lifetime, text
    assert 2.9 < float(study[1]) <= 3.0 and float(lifetime[1]) >= float(study[1]) - 1e-3  # the plan's 1 % unspent
    assert re.search(
        r"memory: training the study's model on this site's data would hold about [\d.]+ MiB \(torch's own runtime "
        r"aside\), of its policy.max-training-mib = 16384",
        text,
    ), text
    assert "note: under local DP, ε covers each site's training steps" in text  # its own standardisation, here
    assert "data.scale = {column = [center, scale]}" in text
    plain = write_study(tmp_path, StudyConfig.from_dict({**raw, "name": "p"}))
    uncapped = tmp_path / "uncapped.toml"
    uncapped.write_text(config.read_text().split("[policy]")[0])
    result = CliRunner().invoke(cli, ["check", "--config", str(uncapped), "--study", str(plain)])
    assert "privacy: privacy.mode = 'off': this site's training rounds would spend no local ε" in result.output


def test_check_admits_an_evaluation_only_study_at_a_site_that_trains_only_under_local_dp(tmp_path, demo_sites):
    """Such a site trains only under local DP but evaluates any study's model: `check` says what its agent does."""
    raw = get_task("tabular").demo_study().to_dict()
    raw["federation"].update({"rounds": 0, "initial-model": "m.safetensors", "initial-model-sha256": "ab" * 32})
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n[data]\npath = "{demo_sites[0].data_path}"\n'
        'task = "tabular"\nlabel = "diagnosis"\n[policy]\nmax-epsilon = 3.0\n'
    )
    study = write_study(tmp_path, StudyConfig.from_dict({**raw, "name": "external"}))
    result = CliRunner().invoke(cli, ["check", "--config", str(config), "--study", str(study)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "ready: the data fits the study" in text, result.output
    assert (
        "initial model: the study only evaluates it here (rounds = 0), training nothing; this site accepts only the "
        f"model whose weights have SHA-256 {'ab' * 32}" in text
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"privacy": {"mode": "local", "epsilon": 1e-4}}, "ε = 0.0001 at δ = 1e-05 is too small for"),
        (  # one row a batch over 2,000 rounds: more steps than the PRV accountant composes in bounded memory
            {"privacy": {"mode": "local"}, "train": {"batch-size": 1}, "federation": {"rounds": 2000}},
            "privacy.accountant = 'rdp' accounts any number",
        ),
    ],
)
def test_check_against_a_study_says_when_an_uncapped_site_cannot_plan_its_noise(tmp_path, demo_sites, changes, says):
    raw = get_task("tabular").demo_study().to_dict()
    study = StudyConfig.from_dict({**raw, "name": "s", **{k: {**raw[k], **v} for k, v in changes.items()}})
    config = tmp_path / "site.toml"
    config.write_text(
        f'name = "north"\nserver = "x:9092"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{demo_sites[0].data_path}"\ntask = "tabular"\nlabel = "diagnosis"\n'
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(config), "--study", str(write_study(tmp_path, study))])
    assert result.exit_code == 2 and "not ready: site 'north'" in result.output, result.output
    assert says in " ".join(result.output.split()), result.output


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


def test_check_without_a_study_describes_the_data(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("age;sex;outcome;\n61,5;F;yes;\n47;M;no;\n;F;no;\n")
    result = CliRunner().invoke(cli, ["check", "--data", str(path), "--site", "north"])
    assert result.exit_code == 0, result.output
    report = [line.strip("│ ") for line in result.output.splitlines() if line.startswith("│")]
    assert report[1:] == [
        "format  │ semicolon-separated, decimal ','",
        "rows    │ 3",
        "columns │ age: numeric, 2 distinct, 1 missing",
        "sex: text, 2 distinct",
        "outcome: text, 2 distinct",
    ]
    assert result.output.splitlines()[-4:] == [
        "note: read as semicolon-separated, decimal separator ','",
        "note: dropped 1 empty column(s) with no header name (a trailing delimiter on every line?)",
        "note: give --study STUDY to check the data against a study",
        "ready: the data is readable",
    ]


def test_check_refuses_a_shifted_row_by_number(tmp_path, study):
    path = tmp_path / "export.csv"
    path.write_text("age,outcome\n61,yes\n47,no,\n")
    args = ["check", "--data", str(path), "--study", str(write_study(tmp_path, study)), "--site", "north"]
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.output) == (
        2,
        f"not ready: site 'north', file '{path}': 1 data row(s) have more fields than the header's 2, so their values "
        "would shift columns: data row(s) 2; remove the trailing comma at the end of those rows\n",
    )


def test_check_describes_a_multimodal_tables_modalities_and_its_omics_file(tmp_path):
    path, table, _ = write_matrix_site(tmp_path)
    table.loc[[4, 6], "image"] = "images/gone.png"
    table.to_csv(path, index=False)
    args = ["check", "--data", str(path), "--site", "north", "--image-column", "image", "--note-column", "note"]
    result = CliRunner().invoke(cli, [*args, "--omics-file", "omics.csv", "--id-column", "pid", "--min-cell", "3"])
    assert result.exit_code == 0, result.output
    cells = [line.strip("│ ").split("│") for line in result.output.splitlines() if line.startswith("│")]
    modalities = " ".join(
        row[-1].strip() for row in cells[next(i for i, r in enumerate(cells) if "modalities" in r[0]) :]
    )
    assert modalities == (
        "image: column 'image': 30 of 40 rows (75%) name an image; fewer than 3 path(s) do not exist, first at data "
        "row 5 note: column 'note': text, 30 of 40 rows (75%) have a note omics: all 3 column(s) in 'omics.csv', "
        "keyed by 'pid'; 30 of 40 rows (75%) have omics values"
    )
    with_study = CliRunner().invoke(cli, [*args, "--study", str(write_study(tmp_path, matrix_study()))])
    assert with_study.exit_code == 2
    assert "'image-column' describes --data without --study or --config" in with_study.output


def test_an_error_naming_brackets_is_printed_as_written_not_read_as_markup(tmp_path):
    """A path or column such as '[/b]' is text: rich would otherwise fail on it, or swallow it."""
    missing = tmp_path / "[b]x" / "[/b].csv"
    result = CliRunner().invoke(cli, ["check", "--data", str(missing)])
    assert result.exit_code == 2 and f"not ready: site 'site', file '{missing}': file not found" in result.output
