"""Provisioning: a CA, a server certificate that verifies for its hosts, one kit per site, private keys 0600."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key
from typer.testing import CliRunner

from client.sitefile import load_site_file
from server.cli import cli
from server.provision import add_site, inside_git_work_tree, provision
from shared.errors import ConfigError


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
