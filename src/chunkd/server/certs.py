"""A small local certificate authority for HTTPS with client certificates (``chunkd certs init``).

It writes, under ``DATA_DIR/tls/``: the CA (``ca.pem`` + ``ca-key.pem``), a server certificate for the given
host names (``server.pem`` + ``server-key.pem``) and two client identities as single PEM files holding key and
certificate, the form ``sfctl cluster select --pem`` and ``requests``' ``cert=`` want: ``admin.pem``
(common name ``chunkd-admin``: image-store writes) and ``reader.pem`` (any other name: reads only).
Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_NAME = "chunkd-admin"
READER_NAME = "chunkd-reader"
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest lifetime most TLS clients accept for a leaf certificate


@dataclass(frozen=True)
class LocalPKI:
    """Where ``init`` puts each file."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def admin(self) -> Path:
        return self.directory / "admin.pem"

    @property
    def reader(self) -> Path:
        return self.directory / "reader.pem"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca, self.server_cert, self.server_key, self.admin, self.reader))

    def uncovered(self, hosts: list[str]) -> list[str]:
        """The names in ``hosts`` the existing server certificate is not valid for."""
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        try:
            have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return list(hosts)
        return [h for h in hosts if _general_name(h) not in have]

    def init(self, hosts: list[str], *, admin_name: str = ADMIN_NAME, reader_name: str = READER_NAME) -> None:
        """Create (or replace) the CA, the server certificate for ``hosts`` and both client PEMs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock differences
        ca_key = _new_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chunkd local CA"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chunkd")])
        ca_cert = (
            _builder(ca_name, ca_name, ca_key, now, CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.ca_key, _key_pem(ca_key), private=True)
        _write(self.ca, _cert_pem(ca_cert))

        server_key = _new_key()
        names = _subject_alt_names(hosts)
        server_cert = (
            _leaf(ca_cert, ca_key, server_key, _first_name(hosts), now, ExtendedKeyUsageOID.SERVER_AUTH)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.server_key, _key_pem(server_key), private=True)
        _write(self.server_cert, _cert_pem(server_cert))

        for path, common_name in ((self.admin, admin_name), (self.reader, reader_name)):
            key = _new_key()
            cert = _leaf(ca_cert, ca_key, key, common_name, now, ExtendedKeyUsageOID.CLIENT_AUTH).sign(
                ca_key, hashes.SHA256())
            _write(path, _key_pem(key) + _cert_pem(cert), private=True)


def _new_key() -> rsa.RSAPrivateKey:
    # RSA rather than EC: Windows certificate stores and older Service Fabric tooling take it everywhere.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, now: dt.datetime,
             days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _leaf(ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, key: rsa.RSAPrivateKey, common_name: str,
          now: dt.datetime, usage: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        _builder(subject, ca_cert.subject, key, now, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    return list(dict.fromkeys(_general_name(h) for h in hosts))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _first_name(hosts: list[str]) -> str:
    return hosts[0] if hosts else "localhost"


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically; private files are created 0600 so a key is never readable by others, even briefly."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover would keep its old mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
