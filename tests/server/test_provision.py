"""Provisioning: a CA, a server certificate that verifies for its hosts, one kit per site, private keys 0600."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key
from typer.testing import CliRunner

import server.provision
from client.sitefile import load_site_file
from server.certificates import RENEW_DAYS, hosts_of
from server.cli import cli
from server.provision import add_site, inside_git_work_tree, provision, remove_site, renew_server_certificate
from server.status import certificate_lines, format_status
from shared.errors import ConfigError
from simulations.loopback import free_port


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_federation_kits_keys_and_certificates(tmp_path):
    fed = provision(tmp_path / "fed", ["fl.hospital.org", "10.0.0.5"], ["north", "south"], port=9092)
    ca = x509.load_pem_x509_certificate(fed.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate((fed.server / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["fl.hospital.org"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server_key = load_pem_private_key((fed.server / "server.key").read_bytes(), None)
    assert server_key.public_key().public_numbers() == server.public_key().public_numbers()
    assert fed.site_names() == ["north", "south"]
    for name in ("north", "south"):
        kit = fed.site(name)
        key = load_ssh_private_key((kit / f"{name}.key").read_bytes(), None)  # what flower-supernode loads
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert (kit / f"{name}.pub").read_bytes() == (fed.server / "site-keys" / f"{name}.pub").read_bytes()
        assert (kit / "ca.crt").read_bytes() == fed.ca_cert.read_bytes()
        assert "medfed-site start --config site.toml" in (kit / "START.txt").read_text()
        assert "medfed-site status --config site.toml" in (kit / "START.txt").read_text()
        assert 'server = "fl.hospital.org:9092"' in (kit / "site.toml").read_text()
    private = [fed.ca_key, fed.server / "server.key", *(fed.site(n) / f"{n}.key" for n in ("north", "south"))]
    assert all(mode(p) == 0o600 for p in private)
    everything = [p for p in fed.root.rglob("*") if p.is_file()]
    assert all(mode(p) == 0o644 for p in everything if p not in private)
    assert sum(p.name.endswith(".key") for p in everything) == 4  # each private key exists exactly once


def test_adding_a_site_later_and_refusals(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"])
    add_site(fed.root, "east")
    assert fed.site_names() == ["east", "north"]
    with pytest.raises(ConfigError, match="already has a kit"):
        add_site(fed.root, "east")
    with pytest.raises(ConfigError, match="lower-case letters"):
        add_site(fed.root, "East Wing")
    with pytest.raises(ConfigError, match="already provisioned"):
        provision(fed.root, ["127.0.0.1"], [])
    with pytest.raises(ConfigError, match="not provisioned"):
        add_site(tmp_path / "nowhere", "x")


def test_each_kit_has_its_own_agent_port_so_sites_run_side_by_side(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north", "south"], 9092)
    add_site(fed.root, "east")
    ports = [load_site_file(fed.site(name) / "site.toml").agent_port for name in ("north", "south", "east")]
    assert ports == [9094, 9095, 9096]


def test_a_removed_site_leaves_its_key_on_the_removed_list_its_kit_archived_and_its_name_and_port_free(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north", "south", "east"], 9092)
    old = (fed.server / "site-keys" / "south.pub").read_bytes()
    revoked = remove_site(fed.root, "south")
    assert fed.site_names() == ["east", "north"] and not fed.site("south").exists()
    assert list(fed.removed_keys()) == [revoked.stem] and re.fullmatch(r"south-[0-9a-f]{16}", revoked.stem)
    assert revoked.read_bytes() == old
    archived = fed.root / "removed" / revoked.stem
    assert (archived / "south.pub").read_bytes() == old and mode(archived / "south.key") == 0o600
    with pytest.raises(ConfigError, match=r"'south' is not a provisioned site \(provisioned: east, north\)"):
        remove_site(fed.root, "south")
    add_site(fed.root, "south")  # the same hospital, a new key pair, and the port its old kit had
    assert (fed.server / "site-keys" / "south.pub").read_bytes() != old
    assert load_site_file(fed.site("south") / "site.toml").agent_port == 9095
    remove_site(fed.root, "south")
    assert len(fed.removed_keys()) == 2  # each key stays on the list
    assert "*.key" in (fed.root / ".gitignore").read_text().splitlines()  # archived kits' keys too


def test_a_site_whose_kit_was_handed_over_is_not_given_a_second_key(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"])
    shutil.rmtree(fed.site("north"))  # the operator kept no copy
    with pytest.raises(ConfigError, match="remove it first with `medfed-server remove-site`"):
        add_site(fed.root, "north")
    remove_site(fed.root, "north")  # a kit no longer here: only the key moves
    assert list(fed.removed_keys())[0].startswith("north-") and not (fed.root / "removed").exists()


def test_removing_a_site_with_the_superlink_down_fails_saying_when_it_takes_effect(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north", "south"], port=free_port())
    result = CliRunner().invoke(cli, ["remove-site", "--federation", str(fed.root), "south"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "site 'south' removed" in said and "not unregistered yet: the SuperLink did not list its sites" in said
    assert "`medfed-server start` starts it, or `medfed-server register` reaches it" in said
    assert fed.site_names() == ["north"]  # on the removed list all the same, which both of those enforce


def test_kits_hold_systemd_units_that_restart_on_failure_and_a_label_hint(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"])
    server = (fed.server / "medfed-server.service").read_text()
    assert "Restart=on-failure" in server and f"start --federation {fed.root} --listen 0.0.0.0" in server
    site = (fed.site("north") / "medfed-site.service").read_text()
    assert "Restart=on-failure" in site and "medfed-site start --config /opt/medfed/north/site.toml" in site
    kit = load_site_file(fed.site("north") / "site.toml")
    assert kit.data_hints == {"label": "outcome"}
    assert kit.policy.max_training_mib == 16384  # the kit's site.toml names the memory cap the site may lower


def test_a_federation_in_a_git_work_tree_is_warned_about_and_its_keys_ignored(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = CliRunner().invoke(
        cli, ["provision", "--out", str(tmp_path / "fed"), "--host", "127.0.0.1", "--site", "north"]
    )
    assert result.exit_code == 0 and "inside the git work tree" in " ".join(result.output.split())
    listed = subprocess.run(
        ["git", "-C", str(tmp_path), "ls-files", "--others", "--exclude-standard"], capture_output=True, text=True
    ).stdout.split()
    assert "fed/sites/north/site.toml" in listed and "fed/server/server.pem" in listed  # shareable files stay visible
    assert not [p for p in listed if p.endswith(".key") or p.startswith("fed/ca/")]
    assert inside_git_work_tree(tmp_path / "fed") == tmp_path.resolve()
    assert inside_git_work_tree(Path("/")) is None


def test_renewing_the_server_certificate_keeps_its_key_and_names_and_needs_the_ca_key(tmp_path, monkeypatch):
    fed = provision(tmp_path / "fed", ["fl.hospital.org", "10.0.0.5"], ["north"], port=9092)
    old = x509.load_pem_x509_certificate((fed.server / "server.pem").read_bytes())
    result = CliRunner().invoke(cli, ["renew-certificate", "--federation", str(fed.root)])
    assert result.exit_code == 0 and "renewed for fl.hospital.org, 10.0.0.5" in result.output, result.output
    new = x509.load_pem_x509_certificate((fed.server / "server.pem").read_bytes())
    new.verify_directly_issued_by(x509.load_pem_x509_certificate(fed.ca_cert.read_bytes()))
    assert new.public_key().public_numbers() == old.public_key().public_numbers()  # server.key is unchanged
    assert new.serial_number != old.serial_number and new.not_valid_after_utc >= old.not_valid_after_utc
    assert hosts_of(new) == ["fl.hospital.org", "10.0.0.5"]
    assert hosts_of(renew_server_certificate(fed.root, ["fl.hospital.org", "fl2.hospital.org"])) == [
        "fl.hospital.org",
        "fl2.hospital.org",
    ]
    with pytest.raises(ConfigError, match="the sites connect to 'fl.hospital.org'.*must name it"):
        renew_server_certificate(fed.root, ["10.0.0.5"])
    monkeypatch.setattr(server.provision, "SERVER_DAYS", 5000)  # beyond the CA's 3650 days: the CA's end is the cap
    ca_end = x509.load_pem_x509_certificate(fed.ca_cert.read_bytes()).not_valid_after_utc
    assert renew_server_certificate(fed.root).not_valid_after_utc == ca_end
    fed.ca_key.unlink()  # kept offline
    with pytest.raises(ConfigError, match=r"ca\.key.*is not here: bring the CA key back"):
        renew_server_certificate(fed.root)


def test_a_server_certificate_near_its_end_is_flagged_and_an_expired_one_is_not_started(tmp_path, monkeypatch):
    monkeypatch.setattr(server.provision, "SERVER_DAYS", 20)
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"], port=free_port())
    (server_line, left), (ca_line, ca_left) = certificate_lines(fed)
    assert left == 19 and server_line.endswith("(19 days left); renew it: medfed-server renew-certificate")
    assert ca_left > RENEW_DAYS and ca_line.startswith("federation CA valid until") and "renew" not in ca_line
    report = format_status([], [], certificates=[server_line, ca_line]).splitlines()
    assert all(len(line) <= 80 for line in report) and report[-1] == ca_line  # the long line wrapped, not cut
    a_minute_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    monkeypatch.setattr(server.provision, "days_from_now", lambda days: a_minute_ago)
    renew_server_certificate(fed.root)
    result = CliRunner().invoke(cli, ["start", "--federation", str(fed.root), "--listen", "127.0.0.1"])
    assert result.exit_code == 2 and "server certificate valid until" in result.output
    assert "EXPIRED; renew it: medfed-server renew-certificate" in " ".join(result.output.split())


def test_a_server_key_other_users_can_read_is_refused_at_start(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"], port=free_port())
    (fed.server / "server.key").chmod(0o640)
    result = CliRunner().invoke(cli, ["start", "--federation", str(fed.root), "--listen", "127.0.0.1"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "server.key" in said and "(mode 0640)" in said and "chmod 600" in said, said


def test_renewing_with_a_damaged_key_or_certificate_names_the_file(tmp_path):
    fed = provision(tmp_path / "fed", ["127.0.0.1"], ["north"])
    (fed.server / "server.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"server\.key.*is not a readable, unencrypted private key"):
        renew_server_certificate(fed.root)
    (fed.server / "server.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"server\.pem.*is not a readable PEM certificate"):
        renew_server_certificate(fed.root)


@pytest.mark.parametrize("host", ["bücher.example", "bad host", "fl/x", "-fl.example", "a..b", ""])
def test_a_host_a_certificate_cannot_name_is_refused_before_anything_is_written(tmp_path, host):
    with pytest.raises(ConfigError, match=rf"--host.*'{re.escape(host)}' is neither an IP address nor a host name"):
        provision(tmp_path / "fed", ["127.0.0.1", host], ["north"])
    assert not (tmp_path / "fed").exists()
    fed = provision(
        tmp_path / "ok", ["127.0.0.1", "::1", "localhost", "fl-1.hospital.org", "xn--bcher-kva.example"], []
    )
    with pytest.raises(ConfigError, match="is neither an IP address nor a host name"):
        renew_server_certificate(fed.root, ["127.0.0.1", host])
