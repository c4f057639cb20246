"""TLS for the local servers: a certificate authority of pgfleet's own, and one server
certificate for the engine host, under `<data home>/tls/`.

- `ca.crt` (0644): what clients verify against (`sslmode=verify-full&sslrootcert=...` in
  every connection URI; PgBouncer's `server_tls_ca_file`);
- `ca.key` (0600, root): only signs; never leaves the control plane;
- `server.crt` / `server.key` (0600, the data-plane user): `ssl_cert_file` / `ssl_key_file`
  of every server (instances, replicas, cluster nodes), for the engine host's address (an IP
  SAN, so verify-full holds for `127.0.0.1`).

Made once and reused; the server certificate is issued again when it nears its end (a restart
or reload of each server picks it up). ECDSA P-256 keys (cryptography, which PyJWT's crypto
extra already brings).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgfleet.adapters.engines.local import process

CA_DAYS = 3650
SERVER_DAYS = 397  # what public CAs may issue at most: clients that check it accept it
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgfleet"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])  # fmt: skip


def _pem_key(key) -> bytes:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_ca(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = _name("pgfleet local CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    _write(directory / "ca.key", _pem_key(key), 0o600, owned=False)
    _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644, owned=False)


def _make_server(directory: Path, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )  # fmt: skip
    _write(directory / "server.key", _pem_key(key), 0o600, owned=True)
    _write(directory / "server.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644, owned=True)


def _write(path: Path, data: bytes, mode: int, owned: bool) -> None:
    if owned:
        process.write_owned_file(path, data.decode(), mode)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _due(cert_path: Path) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE


def ensure(home: Path, host: str) -> TlsFiles:
    """The CA and the host's server certificate, made when missing or near their end."""
    directory = home / "tls"
    directory.mkdir(mode=0o755, exist_ok=True)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    if files.server_key.exists() and not _due(files.server_cert) and not _due(files.ca_cert):
        return files
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # engines of several processes start at once
        if _due(files.ca_cert):
            _make_ca(directory)
            _make_server(directory, host)
        elif _due(files.server_cert) or not files.server_key.exists():
            _make_server(directory, host)
    return files
