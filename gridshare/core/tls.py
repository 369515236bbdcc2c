"""The local stack's certificate authority: one CA and the broker's server certificate.

Devices reach the broker over TLS only, so their passwords never travel in clear text. The
stack creates a private CA once (under the state dir, key mode 0600) and signs the broker's
certificate with it; each device's identity file carries the CA certificate (PEM) to verify
the broker with. An operator with their own PKI replaces `ca.pem`, `server.pem` and
`server.key` before `stack up`: existing files are never overwritten.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridshare.core.errors import StackError
from gridshare.core.files import write_private
from gridshare.core.settings import Settings

CA_DAYS = 3650
SERVER_DAYS = 825


class CertificateAuthority:
    """The CA and server certificate files under `{state_dir}/tls`."""

    def __init__(self, settings: Settings) -> None:
        self.dir = settings.state_path / "tls"
        self.ca_cert = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.server_cert = self.dir / "server.pem"
        self.server_key = self.dir / "server.key"
        self.host = settings.mqtt_device_host

    def ensure(self) -> None:
        """Create what is missing: the CA, then a server certificate signed by it."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridshare local CA")])
            cert = (
                _builder(name, name, key.public_key(), CA_DAYS)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(cert_sign=True), critical=True)
                .sign(key, hashes.SHA256())
            )
            write_private(self.ca_key, _key_pem(key))
            write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
            self.server_cert.unlink(missing_ok=True)
        if not self.server_cert.exists():
            self._issue_server_certificate()

    def ca_pem(self) -> str:
        """The CA certificate devices verify the broker with."""
        try:
            return self.ca_cert.read_text()
        except FileNotFoundError as exc:
            raise StackError(
                "no broker CA certificate in the state dir (tls/ca.pem): start the local stack"
                " with `gridshare stack up`, or put the CA of your broker's certificate there"
            ) from exc

    def _issue_server_certificate(self) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.host)])
        cert = (
            _builder(name, ca_cert.subject, key.public_key(), SERVER_DAYS)
            .add_extension(x509.SubjectAlternativeName(_alt_names(self.host)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_private(self.server_key, _key_pem(key))
        write_private(self.server_cert, cert.public_bytes(serialization.Encoding.PEM))


def client_context(ca_pem: str) -> ssl.SSLContext:
    """A client context that trusts only the given CA and checks the broker's host name."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for entry in {host, "127.0.0.1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    return names


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
