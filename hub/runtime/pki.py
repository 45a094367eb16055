"""The local stack's secrets: a CA and the broker's TLS key, and one SCRAM password per principal.

Layout under the state directory (folders 0700, files 0600; the CA certificate 0644 inside its 0700 folder)::

    tls/ca.pem            the local CA's certificate (clients trust it: KENSHIN_KAFKA_SSL_CAFILE)
    tls/ca-key.pem        the CA's private key (only `stack up` reads it, to sign the server certificate)
    tls/server.pem        the brokers' and the registry gate's private key (PKCS#8) + certificate chain
    tls/server-key.pem    the same private key alone (nginx wants key and certificate apart)
    tls/server-cert.pem   the same certificate chain alone
    secrets/kafka/<principal>.password   one random password per principal (SCRAM and the registry gate)

Everything is created once and reused: a restart keeps the CA the clients already trust and the passwords the
cluster already stores. The keys are EC P-256; the server certificate names ``127.0.0.1`` and ``localhost`` and
lives 825 days, the CA ten years.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DIR_MODE = 0o700
FILE_MODE = 0o600
CA_DAYS = 3650
SERVER_DAYS = 825
SERVER_NAME = "kenshin-hub-local-stack"  # also the controllers' TLS principal: User:CN=<this>


@contextlib.contextmanager
def owner_only() -> Iterator[None]:
    """Files and folders created inside (by this process and the processes it starts) are 0600 / 0700."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (created when missing; an existing one is tightened)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, content: bytes, mode: int = FILE_MODE) -> None:
    """Write ``content`` to ``path`` created with ``mode`` from the start (never briefly world-readable)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Pki:
    """The TLS files of one state directory. The server certificate names ``localhost`` and 127.0.0.1, and the
    DNS ``names`` a deployment adds (docker-compose's service names).
    """

    root: Path
    names: tuple[str, ...] = ()

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def server_pem(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server-cert.pem"

    def ensure(self) -> None:
        """Create the CA and the server key and certificate when missing (or when the server's has expired)."""
        private_dir(self.root)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            self._new_ca()
        if not self._server_valid():
            self._new_server()

    def _new_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{SERVER_NAME}-ca")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.ca_key, _pkcs8(key))
        write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        for stale in (self.server_pem, self.server_key, self.server_cert):
            stale.unlink(missing_ok=True)  # signed by a CA that is gone

    def _server_valid(self) -> bool:
        if not (self.server_pem.exists() and self.server_key.exists() and self.server_cert.exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
        named = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        return cert.issuer == ca.subject and cert.not_valid_after_utc > soon and set(self.names) <= set(named)

    def _new_server(self) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.ca_key} is not an EC private key")
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        *(x509.DNSName(n) for n in self.names),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.ca_cert.read_bytes()
        write_private(self.server_key, _pkcs8(key))
        write_private(self.server_cert, chain)
        write_private(self.server_pem, _pkcs8(key) + chain)


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Passwords:
    """One random password per principal, each in its own 0600 file."""

    root: Path

    def path(self, principal: str) -> Path:
        if not principal or "/" in principal or principal.startswith("."):
            raise ValueError(f"not a principal name: {principal!r}")
        return self.root / f"{principal}.password"

    def ensure(self, principal: str) -> str:
        """The principal's password, created (256 random bits, URL-safe) when it has none yet."""
        path = self.path(principal)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32).encode())
        return self.read(principal)

    def read(self, principal: str) -> str:
        return self.path(principal).read_text(encoding="utf-8").strip()

    def known(self) -> list[str]:
        return sorted(p.name.removesuffix(".password") for p in self.root.glob("*.password"))
