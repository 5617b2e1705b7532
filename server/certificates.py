"""X.509 with `cryptography`: the federation CA, the SuperLink's server certificate, and how long each stays valid."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import ConfigError

CA_DAYS, SERVER_DAYS = 3650, 825  # 825 days: the longest TLS server certificate lifetime clients widely accept
RENEW_DAYS = 60  # `status` and `start` warn this long before the server certificate expires
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(?:\.{LABEL})*$")


def check_hosts(hosts: list[str]) -> None:
    """Refuse, naming it, a host that is neither an IP address nor a DNS host name a certificate can carry."""
    for host in hosts:
        if _ip(host) is None and not HOST_NAME.match(host):
            raise ConfigError(
                "--host",
                f"'{host}' is neither an IP address nor a host name (letters, digits, dashes and dots; a name with "
                "other letters in its ASCII form, e.g. xn--bcher-kva.example for bücher.example)",
                source="command line",
            )


def name(common_name: str) -> x509.Name:
    """An X.509 name holding only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    until: dt.datetime,
    ca: bool = False,
    hosts: list[str] | None = None,
) -> x509.Certificate:
    """A CA certificate, or a TLS server certificate naming `hosts` (DNS names or IP addresses), valid until `until`."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts or []]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA384())


def days_from_now(days: int) -> dt.datetime:
    """The moment `days` days from now, in UTC."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def load(path: Path) -> x509.Certificate:
    """A PEM certificate, or an error naming the file."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"is not a readable PEM certificate ({exc})", source="server kit") from exc


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM private key as provisioning writes it, or an error naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            str(path), f"is not a readable, unencrypted private key ({exc})", source="federation"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(str(path), f"holds a {type(key).__name__}, not the key provisioning made", "federation")
    return key


def hosts_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a server certificate names, in its order (none without that extension)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(entry.value) for entry in names]


def validity(path: Path, what: str, remedy: str) -> tuple[str, int]:
    """Until when the certificate at `path` is valid, as a line ending with `remedy` when it has expired or expires
    within RENEW_DAYS; and the whole days left (negative once expired)."""
    until = load(path).not_valid_after_utc
    left = (until - dt.datetime.now(dt.UTC)).days
    line = f"{what} valid until {until:%Y-%m-%d} UTC"
    if left < 0:
        return f"{line}: EXPIRED; {remedy}", left
    if left < RENEW_DAYS:
        return f"{line} ({left} days left); {remedy}", left
    return f"{line} ({left} days left)", left


def _san(host: str) -> x509.GeneralName:
    ip = _ip(host)
    return x509.DNSName(host) if ip is None else x509.IPAddress(ip)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The host as an IP address, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
