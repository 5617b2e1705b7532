"""Provisioning with `cryptography`: a federation CA, the SuperLink's TLS certificate, and one kit per hospital.

Layout under the federation folder (the operator keeps `ca/` offline; each kit is handed to its owner):

    ca/ca.key, ca/ca.crt                        the federation's certificate authority
    server/ca.crt, server.pem, server.key       the SuperLink's TLS identity (SANs: the given hosts and IPs);
                                                `renew_server_certificate` replaces server.pem, keeping the key
    server/site-keys/<site>.pub                 each hospital's public authentication key, to register
    server/removed-keys/<site>-<fp>.pub         removed hospitals' keys: every start and register unregisters them
    server/medfed-server.service                a systemd unit running the server, restarted on failure
    sites/<site>/ca.crt, <site>.key, <site>.pub the hospital's kit: trust anchor and its own key pair
    sites/<site>/site.toml, START.txt           a site config template and the exact start command
    sites/<site>/medfed-site.service            a systemd unit running the site's agent, restarted on failure
    removed/<site>-<fp>/                        a removed hospital's kit, as it was (<fp>: its key's fingerprint)
    .gitignore                                  ignores the private keys and the server's state

Private keys are written 0600 and exist in exactly one kit; the CA key never leaves `ca/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server import certificates
from server.certificates import CA_DAYS, SERVER_DAYS, days_from_now
from shared.atomic import atomic_write_bytes, fsync_path
from shared.errors import COMMAND_LINE, ConfigError

SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_PORT = 9092
AGENT_PORT = 9094  # the first kit's local agent port; Flower's SuperNode default


@dataclass(frozen=True)
class Federation:
    """Paths of a provisioned federation folder, always absolute: they are handed to Flower's processes, which
    run in other folders and refuse relative certificate paths."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @property
    def ca_key(self) -> Path:
        """The CA's private key (keep offline)."""
        return self.root / "ca" / "ca.key"

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every party trusts."""
        return self.root / "ca" / "ca.crt"

    @property
    def server(self) -> Path:
        """The server kit folder."""
        return self.root / "server"

    def site(self, name: str) -> Path:
        """One hospital's kit folder."""
        return self.root / "sites" / name

    def site_keys(self) -> dict[str, Path]:
        """Provisioned hospitals' public key files, by name."""
        return {p.stem: p for p in sorted((self.server / "site-keys").glob("*.pub"))}

    def site_names(self) -> list[str]:
        """Provisioned hospitals, by name."""
        return list(self.site_keys())

    def removed_keys(self) -> dict[str, Path]:
        """Removed hospitals' public key files, by `<site>-<fingerprint>`: the keys the SuperLink must not hold."""
        return {p.stem: p for p in sorted((self.server / "removed-keys").glob("*.pub"))}


def provision(root: Path, hosts: list[str], sites: list[str], port: int = DEFAULT_PORT) -> Federation:
    """Create the CA, the server kit and one kit per site; refuses to overwrite an existing federation."""
    fed = Federation(root)
    if fed.ca_key.exists():
        raise ConfigError(
            "--out", f"'{root}' is already provisioned; add sites with `medfed-server add-site`", source=COMMAND_LINE
        )
    if not hosts:
        raise ConfigError("--host", "give at least one host name or IP address the sites will connect to", COMMAND_LINE)
    certificates.check_hosts(hosts)
    for name in sites:  # all checked before anything is written: a bad name must not leave half a federation
        _check_site_name(name)
    if twice := sorted({name for name in sites if sites.count(name) > 1}):
        raise ConfigError("--site", f"'{twice[0]}' is given more than once", source=COMMAND_LINE)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = certificates.name("medfed federation CA")
    ca_cert = certificates.issue(ca_name, ca_name, ca_key.public_key(), ca_key, days_from_now(CA_DAYS), ca=True)
    _write_private(fed.ca_key, ca_key)
    _write(fed.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = certificates.issue(
        certificates.name(hosts[0]),
        ca_cert.subject,
        server_key.public_key(),
        ca_key,
        days_from_now(SERVER_DAYS),
        hosts=hosts,
    )
    _write_private(fed.server / "server.key", server_key)
    _write(fed.server / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM))
    _write(fed.server / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(fed.server / "address.txt", f"{hosts[0]}:{port}\n".encode())
    _write(fed.server / "medfed-server.service", server_unit(fed).encode())
    _write(fed.root / ".gitignore", GITIGNORE.encode())
    for name in sites:
        add_site(root, name)
    return fed


def renew_server_certificate(root: Path, hosts: list[str] | None = None) -> x509.Certificate:
    """A new server certificate for the SuperLink's key, signed by the federation CA: for SERVER_DAYS, or until the CA
    expires if that is sooner. The hosts default to the current certificate's; the host the sites connect to
    (address.txt) must be among them. Sites need nothing new: they trust the CA."""
    fed = provisioned(root)
    if not fed.ca_key.is_file():
        raise ConfigError(
            str(fed.ca_key),
            "is not here: bring the CA key back from where it is kept offline, renew, then put it away again",
            source=COMMAND_LINE,
        )
    current = certificates.load(fed.server / "server.pem")
    hosts = list(hosts or certificates.hosts_of(current))
    certificates.check_hosts(hosts)
    connect = address_of(fed).rsplit(":", 1)[0]
    if connect not in hosts:
        raise ConfigError(
            "--host",
            f"the sites connect to '{connect}' (server/address.txt): the certificate must name it",
            COMMAND_LINE,
        )
    ca_key, server_key = certificates.load_key(fed.ca_key), certificates.load_key(fed.server / "server.key")
    ca_cert = certificates.load(fed.ca_cert)
    until = min(days_from_now(SERVER_DAYS), ca_cert.not_valid_after_utc)
    cert = certificates.issue(current.subject, ca_cert.subject, server_key.public_key(), ca_key, until, hosts=hosts)
    _write(fed.server / "server.pem", cert.public_bytes(serialization.Encoding.PEM))  # one file: the key stays
    return cert


def address_of(fed: Federation) -> str:
    """The address (host:port) the sites connect to, as provisioned."""
    path = fed.server / "address.txt"
    if not path.is_file():
        raise ConfigError("--federation", f"'{fed.root}' is not provisioned (no server/address.txt)", COMMAND_LINE)
    return path.read_text().strip()


def provisioned(root: Path) -> Federation:
    """The federation at `root`, or an error saying it is not one."""
    fed = Federation(root)
    if not fed.ca_cert.is_file():
        raise ConfigError(
            "--federation", f"'{root}' is not provisioned; run `medfed-server provision` first", source=COMMAND_LINE
        )
    return fed


def _check_site_name(name: str) -> None:
    if not SITE_NAME.match(name):
        raise ConfigError("site", f"'{name}' must be lower-case letters, digits and dashes (at most 63)", COMMAND_LINE)


def add_site(root: Path, name: str) -> Path:
    """One more hospital: its authentication key pair and kit; its public key joins the server's list."""
    fed = provisioned(root)
    _check_site_name(name)
    kit = fed.site(name)
    if kit.exists():
        raise ConfigError("site", f"'{name}' already has a kit at {kit}", source=COMMAND_LINE)
    if name in fed.site_keys():  # its kit was handed over and deleted here: its key is still the one registered
        raise ConfigError(
            "site",
            f"'{name}' is provisioned (server/site-keys/{name}.pub); to give it a new key, remove it first with "
            f"`medfed-server remove-site`",
            source=COMMAND_LINE,
        )
    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public += f" medfed-site-{name}\n".encode()
    ssh_private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    _write(kit / f"{name}.key", ssh_private, private=True)
    _write(kit / f"{name}.pub", public)
    _write(kit / "ca.crt", fed.ca_cert.read_bytes())
    _write(fed.server / "site-keys" / f"{name}.pub", public)
    _write(kit / "site.toml", site_template(name, address_of(fed), _free_agent_port(fed)).encode())
    _write(kit / "START.txt", start_text(name).encode())
    _write(kit / "medfed-site.service", site_unit(name).encode())
    return kit


def _free_agent_port(fed: Federation) -> int:
    """The lowest agent port no other kit's site.toml takes, so that sites can run side by side on one machine."""
    taken = set()
    for name in fed.site_names():
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):  # a kit edited by hand, or handed over
            taken.add(int(tomllib.loads((fed.site(name) / "site.toml").read_text())["agent-port"]))
    return next(port for port in itertools.count(AGENT_PORT) if port not in taken)


def remove_site(root: Path, name: str) -> Path:
    """Take a hospital out: its public key moves to the revocation list and its kit under removed/.

    Returns the key's new path. The key moves first: from then on `start` and `register` unregister its node, and no
    later run of the ServerApp accepts a reply signed with it, whether or not the SuperLink is reached now.
    """
    fed = provisioned(root)
    key = fed.site_keys().get(name)
    if key is None:
        names = ", ".join(fed.site_names()) or "none"
        raise ConfigError("site", f"'{name}' is not a provisioned site (provisioned: {names})", COMMAND_LINE)
    label = f"{name}-{key_fingerprint(key)}"
    revoked = fed.server / "removed-keys" / f"{label}.pub"
    revoked.parent.mkdir(exist_ok=True)
    os.replace(key, revoked)
    fsync_path(revoked.parent)
    fsync_path(key.parent)
    if fed.site(name).exists():
        archive = fed.root / "removed"
        archive.mkdir(exist_ok=True)
        folder = archive / label
        for i in itertools.count(2):  # a key restored by hand and removed again keeps its first archive
            if not folder.exists():
                break
            folder = archive / f"{label}-{i}"
        os.replace(fed.site(name), folder)
        fsync_path(archive)
    return revoked


def key_fingerprint(path: Path) -> str:
    """A site key file's short fingerprint: the first 16 hex digits of SHA-256 over its OpenSSH type and key."""
    key = " ".join(path.read_text(errors="replace").split()[:2])  # type and key, without the comment
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def inside_git_work_tree(folder: Path) -> Path | None:
    """The git work tree holding `folder` (or the nearest existing folder above it), or None."""
    for parent in [folder.resolve(), *folder.resolve().parents]:
        if (parent / ".git").exists():
            return parent
    return None


GITIGNORE = """# Written by medfed-server provision: private keys and the server's state never belong in a repository.
*.key
ca/
server/state.db*
server/flwr-home/
server/outputs/
sites/*/ledgers*/
sites/*/.*.secret
sites/*/.*.json
"""


def server_unit(fed: Federation) -> str:
    """A systemd unit for the server: `medfed-server start`, restarted on failure, logging to the journal."""
    return _unit(
        "medfed federation server (Flower SuperLink)",
        fed.server,
        f"{Path(sys.executable).with_name('medfed-server')} start --federation {fed.root} --listen 0.0.0.0",
    )


def site_unit(name: str) -> str:
    """A systemd unit for a site's agent; the paths are where the hospital installs medfed and puts this kit."""
    kit = f"/opt/medfed/{name}"
    return f"# Edit the two paths: this kit's folder ({kit}) and medfed's installed command.\n" + _unit(
        f"medfed site agent '{name}'", Path(kit), f"/opt/medfed/venv/bin/medfed-site start --config {kit}/site.toml"
    )


def _unit(description: str, folder: Path, command: str) -> str:
    # SIGTERM stops the agent's SuperNode and worker, or the SuperLink, cleanly; the exit codes then count as success.
    return f"""[Unit]
Description={description}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=medfed
WorkingDirectory={folder}
ExecStart={command}
Restart=on-failure
RestartSec=10
KillSignal=SIGTERM
TimeoutStopSec=30
SuccessExitStatus=143 SIGTERM
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""


def site_template(name: str, address: str, agent_port: int = AGENT_PORT) -> str:
    """The site config a hospital fills in: its data, policy and the kit's certificate and key."""
    return f'''# medfed site config for "{name}". Edit the [data] path and the [policy] table; keep this file local.
name = "{name}"
server = "{address}"
ca-certificate = "ca.crt"        # relative paths are relative to this file
private-key = "{name}.key"
device = "auto"                  # auto | cpu | cuda | cuda:N
ledger-dir = "ledgers"           # this site's privacy journal: never delete it
# ledger-key = "ledgers-keys/{name}.key"             # default: the journal's MAC key, kept apart from it
# ledger-anchor = "ledgers-keys/{name}.anchor.json"  # default: best on another disk, backed up apart
agent-port = {agent_port}                # the agent's local port (loopback only); one per agent on a machine
app-code = "installed"           # run only this site's installed medfed; "server" runs the server's app (unsafe)

[data]
path = "/path/to/your/data.csv"  # a table, an image folder or .npz, a notes CSV/JSONL
task = "tabular"                 # tabular | imaging | segmentation | text | survival | multimodal
label = "outcome"                # hints describing the data (tabular: the label column)

[policy]
tasks = ["tabular"]              # tasks this site accepts
models = []                      # model names it accepts; empty accepts the task's models
max-epsilon = 8.0                # the most (ε) a study may spend of this site's patients, with local DP
max-delta = 0                    # 0: δ ≤ 1/(10·n) of the site's n training rows
lifetime-epsilon = 0             # the most ε all studies together may spend; 0: the same as max-epsilon
min-sites = 3                    # refuse studies that aggregate fewer sites than this
max-training-mib = 16384         # refuse studies whose model and data would hold more memory (MiB) here
max-round-minutes = 240          # the longest one round may train here, whatever its study's round-timeout
require-approval = false         # true: only studies approved here (medfed-site approve --study FILE) reach the data
trusted-publishers = ""          # only with app-code = "server": Flower trusted-entities YAML of app signers

[models]                         # pretrained folders this site offers to studies, by name (a study never names a path)
# minilm = "/opt/models/all-MiniLM-L6-v2"    # or {{ path = "...", sha256 = "..." }}
'''


def start_text(name: str) -> str:
    """The kit's instructions: the exact commands to check and start the site agent."""
    return f"""Site "{name}": starting the medfed agent

1. Edit site.toml: [data] path and task, and the [policy] table.
2. Check the data locally (nothing is sent):
       medfed-site check --config site.toml
3. Start the agent (it runs the same check first, then joins the federation over TLS):
       medfed-site start --config site.toml
   Ctrl-C or SIGTERM stops it cleanly. To run it as a service that restarts on failure and at boot, edit the
   paths in medfed-site.service, then:
       sudo cp medfed-site.service /etc/systemd/system/ && sudo systemctl enable --now medfed-site
   Its log: journalctl -u medfed-site
4. Is it up and connected, and what did it last do? (exit code 0 when connected; nothing is sent)
       medfed-site status --config site.toml

{name}.key is this site's private key: it stays here, readable by the agent's user only (mode 0600).
Only outbound HTTPS to the server address in site.toml is needed; no inbound port is opened.
"""


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(path, pem, private=True)


def _write(path: Path, content: bytes, private: bool = False) -> None:
    """Write atomically; a private file is created 0600 from the start, never readable by others even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content, 0o600 if private else 0o644)
