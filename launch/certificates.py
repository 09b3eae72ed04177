"""Certificates for the local broker's TLS listener, made on the spot: a CA, a broker certificate it signs (for
127.0.0.1 and localhost) and a client certificate for mutual TLS. PEM files only: Kafka reads PEM key stores
(``ssl.keystore.type=PEM``) and Python's ``ssl`` reads PEM, so no keytool and no JKS.

Made with ``cryptography`` (already installed for PyJWT's RSA and EC keys); for tests and local clusters, never
for production, where the operator's own CA signs the brokers.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Where one set of certificates lives (``directory``), by role."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate: the trust store of brokers and clients."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def broker(self) -> Path:
        """The broker's key store: its private key (PKCS#8, unencrypted) then its certificate and the CA's."""
        return self.directory / "broker.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"

    def exist(self) -> bool:
        return all(p.exists() for p in (self.ca, self.ca_key, self.broker, self.client_cert, self.client_key))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "locstream local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    hosts: tuple[str, ...] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


def generate(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), ca_name: str = "locstream CA"
) -> TlsFiles:
    """A CA, a broker certificate for ``hosts`` and a client certificate, in ``directory`` (kept when present)."""
    files = TlsFiles(directory)
    if files.exist():
        return files
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(ca_name, ca_key, None)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _issue("locstream broker", broker_key, (ca, ca_key), hosts=hosts, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("locstream-svc", client_key, (ca, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files.ca_key.write_bytes(_key_pem(ca_key))
    files.ca_key.chmod(0o600)
    files.broker.write_bytes(_key_pem(broker_key) + _cert_pem(broker) + _cert_pem(ca))
    files.broker.chmod(0o600)
    files.client_key.write_bytes(_key_pem(client_key))
    files.client_key.chmod(0o600)
    files.client_cert.write_bytes(_cert_pem(client))
    files.ca.write_bytes(_cert_pem(ca))  # last: its presence (with the others) means the set is complete
    return files
