"""The site config file: parsing with named errors, and a policy the site enforces on every study."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from client.agent import supernode_command
from client.site import SiteConfig, preflight
from client.sitefile import SitePolicy, load_site_file
from shared.config import PrivacyConfig
from shared.errors import ConfigError, PolicyError
from shared.privacy.caps import PrivacyCaps
from shared.tasks import get_task

SITE = """name = "north"
server = "fl.example.org:9092"
private-key = "north.key"
agent-port = 9200
[data]
path = "{data}"
task = "tabular"
label = "diagnosis"
[policy]
tasks = ["tabular"]
models = ["mlp"]
max-epsilon = 4.0
min-sites = 3
max-training-mib = 512
"""


def write(tmp_path, text):
    path = tmp_path / "kit" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_site_file_resolves_kit_paths_and_reads_the_policy(tmp_path):
    data = get_task("tabular").write_demo_sites(tmp_path / "data", 2)[0]
    site = load_site_file(write(tmp_path, SITE.format(data=data)))
    assert site.private_key == tmp_path / "kit" / "north.key" and site.ca_certificate == tmp_path / "kit" / "ca.crt"
    assert site.policy == SitePolicy(
        tasks=["tabular"], models=["mlp"], max_epsilon=4.0, min_sites=3, max_training_mib=512
    )
    command = supernode_command(site)
    assert command[command.index("--superlink") + 1] == "fl.example.org:9092"
    assert command[command.index("--auth-supernode-private-key") + 1] == str(site.private_key)
    assert "--insecure" not in command and f'site-config="{site.path}"' in command
    report = preflight(site)  # described without any study: counts, label balance, missing values
    assert report["rows-read"] > 0 and "missing-per-column" in report
    assert set(report["class-counts"]) == {"benign", "malignant"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.replace('name = "north"\n', ""), "'name' is required"),
        (lambda s: s.replace('task = "tabular"', 'task = "genomics"'), "data.task"),
        (lambda s: s.replace("min-sites = 3", "min-sites = 0"), "policy.min-sites"),
        (lambda s: s.replace("max-epsilon = 4.0", "max-epsilon = -1.0"), "policy.max-epsilon"),
        (lambda s: s.replace('tasks = ["tabular"]', 'tasks = ["x"]'), "policy.tasks"),
        (lambda s: s.replace("max-training-mib = 512", "max-training-mib = 0"), "policy.max-training-mib"),
        (lambda s: s.replace("max-training-mib = 512", "max-training-mib = inf"), "policy.max-training-mib"),
        (lambda s: s.replace("max-training-mib = 512", "max-round-minutes = 0"), "policy.max-round-minutes"),
        (lambda s: s + "[oops", "not valid TOML"),
        (lambda s: s.replace('name = "north"\n', 'name = "north"\ndevice = "gpu1"\n'), "device"),
    ],
)
def test_bad_site_file_names_the_file_and_key(tmp_path, change, field):
    with pytest.raises(ConfigError) as err:
        load_site_file(write(tmp_path, change(SITE.format(data="x.csv"))))
    assert field in str(err.value) and "site.toml" in str(err.value)


def test_policy_refuses_what_the_site_does_not_accept(study):
    policy = SitePolicy(tasks=["tabular"], models=["mlp"], min_sites=3)
    accepted = dataclasses.replace(
        study, model={"name": "mlp"}, federation=dataclasses.replace(study.federation, min_sites=3)
    )
    policy.check(accepted, "north")
    cases = {
        "task 'imaging' is not among": dataclasses.replace(accepted, task="imaging"),
        "model 'logreg' is not among": dataclasses.replace(accepted, model={"name": "logreg"}),
        "as few as 2 sites": dataclasses.replace(
            accepted, federation=dataclasses.replace(study.federation, min_sites=2)
        ),
    }
    for reason, asked in cases.items():
        with pytest.raises(PolicyError, match=reason) as err:
            policy.check(asked, "north")
        assert "site 'north' refuses study" in str(err.value)
    assert dataclasses.replace(accepted, privacy=PrivacyConfig(mode="local", epsilon=2.0))  # ε is SitePrivacy's job
    # An evaluation-only study aggregates no update of this site's: its min-sites has nothing to bound.
    evaluation = dataclasses.replace(
        accepted,
        federation=dataclasses.replace(study.federation, rounds=0, min_sites=1, initial_model="m.safetensors"),
    )
    policy.check(evaluation, "north")


def test_privacy_caps_and_ledger_paths_come_from_the_site_file_and_node_config(tmp_path):
    text = SITE.format(data="x.csv").replace(
        "max-epsilon = 4.0", "max-epsilon = 4.0\nmax-delta = 1e-6\nlifetime-epsilon = 6.0"
    )
    text = 'ledger-key = "/secure/north.key"\nledger-anchor = "anchors/north.json"\n' + text
    site = SiteConfig.from_site_file(load_site_file(write(tmp_path, text)))
    assert site.privacy_caps() == PrivacyCaps(max_epsilon=4.0, max_delta=1e-6, lifetime_epsilon=6.0)
    files = site.ledger_files()
    assert files.key == Path("/secure/north.key") and files.anchor == tmp_path / "kit" / "anchors" / "north.json"
    default = SiteConfig.from_site_file(load_site_file(write(tmp_path, SITE.format(data="x.csv"))))
    assert default.privacy_caps().lifetime_cap == 4.0  # a capped site: renaming a study buys no budget
    assert default.ledger_files().key.parent == tmp_path / "kit" / "ledgers-keys"  # apart from the journal
    # the worker keeps any data admission let in: a 2 GiB image set is not read again for every message
    assert default.data_cache_mib == default.policy.max_training_mib == 512
    node = SiteConfig.from_node_config({"data-path": "x.csv", "max-epsilon": 2.0, "max-delta": 1e-6})
    assert node.privacy_caps() == PrivacyCaps(max_epsilon=2.0, max_delta=1e-6)
    with pytest.raises(ConfigError, match="policy.max-delta"):
        load_site_file(write(tmp_path, SITE.format(data="x.csv").replace("min-sites", "max-delta = 2.0\nmin-sites")))


def test_a_relative_config_path_gives_the_agent_absolute_paths(tmp_path, monkeypatch):
    write(tmp_path, SITE.format(data="data.csv"))
    monkeypatch.chdir(tmp_path)
    site = load_site_file(Path("kit/site.toml"))
    command = supernode_command(site, secret=Path(".secret").resolve())
    paths = [site.path, site.data_path, site.ledger_dir, site.private_key, site.ca_certificate]
    assert all(p.is_absolute() for p in paths)
    assert f'site-config="{tmp_path / "kit" / "site.toml"}"' in command
    for option in ("--root-certificates", "--auth-supernode-private-key", "--superexec-auth-secret-file"):
        assert Path(command[command.index(option) + 1]).is_absolute(), option


def test_the_site_check_refuses_a_gpu_that_is_not_there_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "north"\nserver = "127.0.0.1:9"\nprivate-key = "north.key"\ndevice = "cuda:1"\n'
        f'[data]\npath = "{tmp_path / "missing.csv"}"\ntask = "tabular"\n'
    )
    with pytest.raises(ConfigError, match="asks for CUDA but no GPU is visible"):
        preflight(load_site_file(path))  # not a missing-file error: the device is checked first


@pytest.mark.parametrize(("key", "setting"), [("north.key", "private-key"), ("ledgers-keys/north.key", "ledger-key")])
def test_a_secret_key_other_users_can_read_is_refused_before_anything_starts(tmp_path, key, setting):
    data = get_task("tabular").write_demo_sites(tmp_path / "data", 2)[0]
    path = tmp_path / "site.toml"
    path.write_text(
        f'name = "north"\nserver = "127.0.0.1:9"\nprivate-key = "north.key"\n'
        f'[data]\npath = "{data}"\ntask = "tabular"\nlabel = "diagnosis"\n'
    )
    for name in ("north.key", "ledgers-keys/north.key"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("secret")
        (tmp_path / name).chmod(0o600)
    assert preflight(load_site_file(path))["train-rows"] > 0  # both the agent's user's only: ready
    (tmp_path / key).chmod(0o644)  # as an unzipped or copied kit often leaves it
    with pytest.raises(ConfigError, match=rf"{setting}.*open to other users of this machine \(mode 0644\).*chmod 600"):
        preflight(load_site_file(path))
