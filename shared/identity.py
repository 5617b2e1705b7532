"""A site's signed claim of its name: binds each reply to the key provisioned for that site, not to what it says.

The site signs (run, node, name) with the private key its kit holds, the same key its SuperNode authenticates with.
The server checks the signature against the public key it provisioned under that name, and the node id against the
one Flower's authenticated connection put on the reply, so a node can neither take another site's name nor replay
another node's claim.
"""

from __future__ import annotations

import base64
import functools
import getpass
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.errors import ConfigError


def statement(run_id: int, node_id: int, site: str) -> bytes:
    """The bytes a site signs."""
    return f"medfed-site-identity|run={run_id}|node={node_id}|site={site}".encode()


@functools.lru_cache(maxsize=8)
def _private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return serialization.load_ssh_private_key(path.read_bytes(), password=None)


def sign(key_path: Path, run_id: int, node_id: int, site: str) -> str:
    """The site's signature (base64) over its claim for this run and node."""
    signature = _private_key(Path(key_path)).sign(statement(run_id, node_id, site), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A provisioned site's public key (the OpenSSH line of its kit's `<name>.pub`), or an error naming the file."""
    try:
        key = serialization.load_ssh_public_key(path.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        problem = f"is not a site's public key ({exc})"
    else:
        if isinstance(key, ec.EllipticCurvePublicKey):
            return key
        problem = f"holds a {type(key).__name__}, not the elliptic-curve key provisioning makes"
    raise ConfigError(str(path), f"{problem}; copy it again from the site's kit ({path.name})", source="server kit")


def load_public_keys(folder: Path) -> dict[str, ec.EllipticCurvePublicKey]:
    """The provisioned sites' public keys, by site name (`<name>.pub` files)."""
    return {path.stem: load_public_key(path) for path in sorted(folder.glob("*.pub"))}


def check_private(path: Path, setting: str, source: str) -> None:
    """Refuse a secret key that other users of this machine can read or change, as ssh does: anyone who reads a
    site's key can act as the site, the journal's key forge its entries, the server's key impersonate the SuperLink.
    A key not there yet is not checked (an --insecure trial has none; the journal's is created 0600 at first use)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise ConfigError(
            setting,
            f"{path} is open to other users of this machine (mode {mode:04o}); make it its owner's only: "
            f"chmod 600 {path}",
            source=source,
        )


def os_user() -> str:
    """The OS user running this command, for the records an operator keeps (its uid when it has no name)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container's user with no entry in /etc/passwd
        return str(os.getuid())


def verify(key: ec.EllipticCurvePublicKey, signature: str, run_id: int, node_id: int, site: str) -> bool:
    """Whether `signature` is the holder of `key` claiming `site` for this run and node."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, statement(run_id, node_id, site), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
