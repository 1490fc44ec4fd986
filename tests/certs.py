"""Test TLS material: a CA with a server and a client certificate, made with the openssl CLI.

`cryptography` is not in the venv, so this shells out to `openssl` (present wherever mosquitto
is). The server certificate names ``localhost`` and ``127.0.0.1``, so host name checks pass
against the test broker.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """Paths of one generated CA and the certificates it signed (all PEM)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl CLI is needed to make test certificates")
    subprocess.run([binary, *args], check=True, capture_output=True)


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> None:
    key, csr, cert, ext = (directory / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    ext.write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-subj", f"/CN={name}", "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext),
             "-out", str(cert))  # fmt: skip


def make_pki(directory: Path, name: str = "test-ca") -> Pki:
    """Generate a CA named `name` and a server and a client certificate into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2",
             "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    server_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    client_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    _signed(directory, f"{name}-server", (ca_cert, ca_key), server_ext)
    _signed(directory, f"{name}-client", (ca_cert, ca_key), client_ext)
    return Pki(
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=directory / f"{name}-server.crt",
        server_key=directory / f"{name}-server.key",
        client_cert=directory / f"{name}-client.crt",
        client_key=directory / f"{name}-client.key",
    )
