"""TLS for the server: credentials from PEM files (mutual TLS when a client CA is given), and
the rule that a plaintext server listens on loopback only unless told ``--insecure``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import grpc

MAX_PEM_BYTES = 1 << 20


@dataclass(frozen=True)
class TlsFiles:
    """PEM file paths: the server's certificate chain and key; with ``client_ca``, clients
    must present a certificate that CA signed."""

    cert: str
    key: str
    client_ca: str | None = None


def read_pem(path: str, what: str) -> bytes:
    """A PEM file's bytes; ValueError saying which file and why when it cannot be used."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise ValueError(f"the {what} {path} is not a PEM file")
    return data


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    client_ca = read_pem(files.client_ca, "client CA") if files.client_ca else None
    return grpc.ssl_server_credentials(
        [(read_pem(files.key, "TLS key"), read_pem(files.cert, "TLS certificate"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` listens on loopback only (127.0.0.0/8, ::1, localhost)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, an empty host or 0.0.0.0-like wildcards: not loopback only
