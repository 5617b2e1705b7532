"""`medfed-server`'s commands: a study is checked before it is submitted; a failed start leaves nothing running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from server.cli import cli
from server.provision import provision
from shared.arrays import read_model_file
from shared.config import load_study
from shared.initial import weights_sha256
from shared.tasks import build_model
from simulations.loopback import free_port


def test_validate_accepts_a_good_study_and_names_a_bad_field(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "s"\n[data]\nlabel = "y"\nclasses = [0, 1]\nfeatures = ["a", "b"]\n')
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0 and "valid" in result.output
    model = build_model(load_study(good))
    parameters = sum(p.numel() for p in model.parameters())
    assert f"model: {parameters:,} parameters, {parameters:,} trained; training holds about " in result.output
    assert "over the default" not in result.output
    # two float32 features and an int64 label; the default cap's room, less the model's, at twice that per example
    assert (
        "an example takes 16 bytes at the study's sizes, so under the default a site may hold up to 536,"
        in " ".join(result.output.split())
    )
    huge = tmp_path / "huge.toml"
    huge.write_text(good.read_text() + "[model]\nhidden = [50000, 50000]\n")
    result = CliRunner().invoke(cli, ["validate", str(huge)])
    assert result.exit_code == 0 and "over the default: a site that keeps it refuses this study" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "s"\n[privacy]\nmode = "local"\nepsilon = -1\n')
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2 and "privacy.epsilon" in result.output and "bad.toml" in result.output


def test_validate_reads_an_initial_model_beside_the_study_file_and_asks_for_its_pin(tmp_path, monkeypatch):
    base = 'name = "s"\n[data]\nlabel = "y"\nclasses = [0, 1]\nfeatures = ["a", "b"]\n'
    study = tmp_path / "studies" / "s.toml"
    study.parent.mkdir()
    study.write_text(base)
    model = tmp_path / "studies" / "m.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(load_study(study)).state_dict().items()}, str(model))
    digest = weights_sha256(read_model_file(model))  # the weights' digest, on the model card of the study that made it
    monkeypatch.chdir(tmp_path)  # not the study's folder: its relative path is read from there all the same
    study.write_text(base + '[federation]\nrounds = 0\ninitial-model = "m.safetensors"\n')
    result = CliRunner().invoke(cli, ["validate", str(study.relative_to(tmp_path))])
    assert result.exit_code == 2 and f'initial-model-sha256 = "{digest}"' in " ".join(result.output.split())
    study.write_text(
        base + f'[federation]\nrounds = 0\ninitial-model = "m.safetensors"\ninitial-model-sha256 = "{digest}"\n'
    )
    result = CliRunner().invoke(cli, ["validate", str(study.relative_to(tmp_path))])
    assert result.exit_code == 0, result.output
    assert (
        f"initial model: {model} (its weights' SHA-256 as pinned; evaluated at every site, nothing trained)"
        in result.output
    )


def test_validate_says_what_a_survival_study_without_horizons_will_not_report(tmp_path):
    study = tmp_path / "s.toml"
    base = 'name = "s"\ntask = "survival"\n[data]\ntime = "days"\nevent = "died"\nfeatures = ["age"]\n'
    study.write_text(base)
    result = CliRunner().invoke(cli, ["validate", str(study)])
    assert result.exit_code == 0, result.output
    assert "note: no data.horizons: the sites will report Harrell's and Uno's C only" in " ".join(result.output.split())
    study.write_text(base + "horizons = [365, 730]\n")
    result = CliRunner().invoke(cli, ["validate", str(study)])
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    private = '[privacy]\nmode = "local"\nepsilon = 3.0\n[model]\nname = "discrete"\n'
    study.write_text(base + "horizons = [365, 730]\ncut-points = [200, 400, 800]\n" + private)
    result = CliRunner().invoke(cli, ["validate", str(study)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "note: under local DP, ε covers each site's training steps" in text, text
    assert "data.scale = {column = [center, scale]}" in text  # printed as written, not read as console markup


def test_provision_and_add_site_commands(tmp_path):
    out = tmp_path / "fed"
    args = ["provision", "--out", str(out), "--host", "127.0.0.1", "--site", "north", "--site", "south"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "sites north, south" in result.output
    result = CliRunner().invoke(cli, ["add-site", "--federation", str(out), "east"])
    assert result.exit_code == 0 and (out / "sites" / "east" / "east.key").is_file()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "already provisioned" in again.output and "Traceback" not in again.output


@pytest.mark.parametrize(
    ("sites", "says"),
    [
        (["north", "South Wing"], "error: command line: 'site' 'South Wing' must be lower-case letters"),
        (["north", "south", "north"], "error: command line: '--site' 'north' is given more than once"),
    ],
)
def test_a_bad_site_name_provisions_nothing_so_the_corrected_command_runs(tmp_path, sites, says):
    out = tmp_path / "fed"
    result = CliRunner().invoke(cli, ["provision", "--out", str(out), "--host", "127.0.0.1", *_sites(sites)])
    assert result.exit_code == 2 and result.output.startswith(says), result.output
    assert not out.exists()  # no CA or server kit that would make the corrected command "already provisioned"
    fixed = CliRunner().invoke(cli, ["provision", "--out", str(out), "--host", "127.0.0.1", *_sites(["north"])])
    assert fixed.exit_code == 0, fixed.output


def _sites(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--site", name)]


def test_an_unprovisioned_federation_is_named_as_the_option_it_came_from(tmp_path):
    result = CliRunner().invoke(cli, ["status", "--federation", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: command line: '--federation' '{tmp_path / 'nowhere'}' is not provisioned")


def test_the_operators_everyday_commands_load_without_torch():
    """status, stop, start and --help import no torch, matplotlib or task: they answer in about a second."""
    code = "import sys, server.cli; print(sorted({'torch', 'matplotlib', 'shared.tasks'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_start_that_fails_to_register_a_site_ends_the_superlink_it_started(tmp_path):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north"], free_port())
    (fed.server / "site-keys" / "north.pub").write_text("not a public key\n")
    command = [str(Path(sys.executable).with_name("medfed-server")), "start", "--federation", str(fed.root)]
    result = subprocess.run([*command, "--listen", "127.0.0.1"], capture_output=True, text=True, timeout=180)
    said = result.stdout + result.stderr
    assert (
        result.returncode == 2 and "north.pub' is not a site's public key" in result.stdout and "Traceback" not in said
    )
    database = str(fed.server / "state.db")
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if database in (p.info["cmdline"] or [])]


def test_a_start_on_a_port_something_else_holds_says_so_and_starts_nothing(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north"], port)
        command = [str(Path(sys.executable).with_name("medfed-server")), "start", "--federation", str(fed.root)]
        result = subprocess.run([*command, "--listen", "127.0.0.1"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and result.stdout.startswith(
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): is another medfed-server or SuperLink "
        "running?"
    ), result.stdout + result.stderr
    assert not (fed.server / "state.db").exists()  # no SuperLink was started


def test_a_superlink_that_cannot_start_is_reported_at_once_not_after_the_wait(tmp_path):
    fed = provision(tmp_path / "federation", ["127.0.0.1"], ["north"], free_port())
    (fed.server / "server.key").write_text("not a key\n")  # medfed reads the certificate, only Flower the key
    command = [str(Path(sys.executable).with_name("medfed-server")), "start", "--federation", str(fed.root)]
    result = subprocess.run([*command, "--listen", "127.0.0.1"], capture_output=True, text=True, timeout=50)
    assert result.returncode == 2 and "error: the SuperLink exited (code 1) before opening 127.0.0.1:" in result.stdout
