"""The broker's own small certificate authority: a CA, the broker's server certificate, gateways' client
certificates and the list of revoked ones (CRL), with the ``cryptography`` library.

Keys are ECDSA P-256: supported by every TLS stack a gateway runs (OpenSSL on Raspberry Pi OS, Python's ``ssl``,
mbedTLS), small, and fast to verify on a Pi. Lifetimes, in days: the CA 10 years (replacing it means visiting
every gateway), a server or client certificate 2 years (``rotate`` renews one). The CRL is signed for the CA's
lifetime: it is a local file the broker reads, not one fetched from a server, and an expired CRL would make
OpenSSL refuse every client certificate at once.
"""

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_DAYS", "LEAF_DAYS", "Issued", "issue_ca", "issue_leaf", "load_ca", "render_crl"]

CA_DAYS = 3650
LEAF_DAYS = 730
_BACKDATE = dt.timedelta(minutes=5)
"""notBefore lies this far in the past, so a gateway whose clock is a little behind still accepts a new cert."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def serial(self) -> int:
        serial: int = x509.load_pem_x509_certificate(self.cert_pem).serial_number
        return serial


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Anju"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def issue_ca(common_name: str, *, now: dt.datetime | None = None) -> Issued:
    """A self-signed CA that may sign certificates and CRLs and no further CAs (path length 0)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
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
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_ca(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key (was it made by anju-hub provision?)")
    return cert, key


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue_leaf(
    ca: Issued, common_name: str, *, server_hosts: Sequence[str] = (), now: dt.datetime | None = None
) -> Issued:
    """A certificate signed by ``ca``: a server's when ``server_hosts`` (DNS names or IP addresses the clients
    dial; checked by their hostname verification) is given, else a client's whose CN is ``common_name`` (the broker
    takes it as the user name with ``use_identity_as_username``)."""
    now = now or dt.datetime.now(dt.UTC)
    ca_cert, ca_key = load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server_hosts:
        builder = builder.add_extension(_subject_alt_names(server_hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def render_crl(ca: Issued, revoked: Mapping[int, dt.datetime], *, now: dt.datetime | None = None) -> bytes:
    """A CRL (PEM) signed by ``ca`` listing the ``revoked`` serial numbers (with when each was revoked), valid as
    long as the CA."""
    now = now or dt.datetime.now(dt.UTC)
    ca_cert, ca_key = load_ca(ca)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(ca_cert.not_valid_after_utc)
    )
    for serial in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked[serial]).build()
        )
    pem: bytes = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return pem
