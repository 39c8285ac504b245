"""A local certificate authority, created on the first start of a mesh, that gives every
workload a short-lived certificate naming its SPIFFE identity, as Istio's CA does.

    <home>/mesh/ca/ca.pem, ca.key           the root (the key never leaves this directory)
    <home>/mesh/ca/<account>.pem, .key      a workload's certificate chain and key
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
NAMESPACE = "fenlei"
CERT_DAYS = 30


def spiffe_id(account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{account}"


@dataclass(frozen=True)
class Identity:
    account: str
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class CertificateAuthority:
    def __init__(self, directory: Path, name: str = "fenlei local mesh CA") -> None:
        self.directory = directory
        self.name = name

    @property
    def root(self) -> Path:
        return self.directory / "ca.pem"

    def _load_or_create(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_file = self.directory / "ca.key"
        if not key_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fenlei"), x509.NameAttribute(NameOID.COMMON_NAME, self.name)]
            )
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(key, hashes.SHA256())
            )
            self.root.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_private(key_file, _key_pem(key))  # written last: its presence means the CA is whole
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        return loaded, x509.load_pem_x509_certificate(self.root.read_bytes())

    def issue(self, account: str) -> Identity:
        """A certificate for a service account, valid for client and server use, naming
        spiffe://cluster.local/ns/fenlei/sa/<account>. Reissued when close to expiry."""
        ca_key, ca_cert = self._load_or_create()
        identity = Identity(account, self.directory / f"{account}.pem", self.directory / f"{account}.key")
        now = datetime.datetime.now(datetime.UTC)
        if identity.cert.exists():
            current = x509.load_pem_x509_certificate(identity.cert.read_bytes())
            if current.not_valid_after_utc - now > datetime.timedelta(days=1):
                return identity
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fenlei")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            # The SPIFFE id is the identity; the DNS name lets plain gRPC clients check the host too.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id(account)), x509.DNSName(account)]), critical=True
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(identity.key, _key_pem(key))
        identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
        return identity
