"""OPC UA application certificates for tests, made with asyncua's own generator."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class AppCert:
    """One application's certificate (DER) and private key (PEM)."""

    cert: Path
    key: Path


def make_app_cert(directory: Path, name: str, uri: str, *, server: bool) -> AppCert:
    key = cert_gen.generate_private_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    certificate = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "Lineside tests"},
        [
            x509.UniformResourceIdentifier(uri),
            x509.DNSName(socket.gethostname()),
            x509.DNSName("localhost"),
        ],
        extended=[usage],
    )
    paths = AppCert(directory / f"{name}.der", directory / f"{name}.pem")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    paths.key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return paths
