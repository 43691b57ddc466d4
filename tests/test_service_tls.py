"""TLS and mutual TLS end to end with certificates made here (the ``cryptography`` package):
a verified client works, a plaintext client and a client without a certificate fail cleanly and
quickly; the CLI's --ca/--cert/--key and --token reach a server that requires them all."""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.cli import cli
from scheduler.config import Valley
from scheduler.domain import Scenario
from scheduler.service.tls import TlsFiles
from tests.trust_support import TOKENS, Stubs, auth_toml, serve_auth


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(signer, hashes.SHA256())


def _write(
    path: Path, cert: x509.Certificate | None, key: ec.EllipticCurvePrivateKey | None
) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = Path(tmp_path_factory.mktemp("pki"))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("valley test CA", ca_key, _name("valley test CA"), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("localhost", server_key, ca.subject, ca_key, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("fintech-ci", client_key, ca.subject, ca_key)
    return Pki(
        _write(d / "ca.pem", ca, None),
        _write(d / "server.pem", server, None),
        _write(d / "server.key", None, server_key),
        _write(d / "client.pem", client, None),
        _write(d / "client.key", None, client_key),
    )


@pytest.fixture(scope="module")
def tls_server(
    tiny: Scenario, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Valley]:
    files = TlsFiles(str(pki.server_cert), str(pki.server_key))
    with serve_auth(tiny, Path(tmp_path_factory.mktemp("tls")), auth_toml(), tls=files) as v:
        yield v


@pytest.fixture(scope="module")
def mtls_server(
    tiny: Scenario, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Valley]:
    files = TlsFiles(str(pki.server_cert), str(pki.server_key), str(pki.ca))
    with serve_auth(tiny, Path(tmp_path_factory.mktemp("mtls")), auth_toml(), tls=files) as v:
        yield v


def _list(channel: grpc.Channel, timeout: float = 10) -> pb.ListWorkloadsResponse:
    s = Stubs.over(channel, TOKENS["a"])
    return s.placement.ListWorkloads(
        pb.ListWorkloadsRequest(), metadata=s.metadata, timeout=timeout
    )


def _fails_quickly(channel: grpc.Channel) -> grpc.RpcError:
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        _list(channel, timeout=5)
    assert time.monotonic() - start < 5.5
    return info.value


def test_a_client_that_trusts_the_ca_talks_tls(pki: Pki, tls_server: Valley) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", creds) as ch:
        assert _list(ch).workloads is not None


def test_a_plaintext_client_against_tls_fails_cleanly(tls_server: Valley) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as ch:
        assert _fails_quickly(ch).code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_with_its_certificate_talks_mutual_tls(pki: Pki, mtls_server: Valley) -> None:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{mtls_server.port}", creds) as ch:
        assert _list(ch).workloads is not None


def test_a_client_without_a_certificate_against_mutual_tls_fails_cleanly(
    pki: Pki, mtls_server: Valley
) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{mtls_server.port}", creds) as ch:
        assert _fails_quickly(ch).code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(f"127.0.0.1:{mtls_server.port}") as ch:
        assert _fails_quickly(ch).code() == grpc.StatusCode.UNAVAILABLE


def test_the_cli_reaches_a_mutual_tls_server_with_its_files_and_token(
    pki: Pki, mtls_server: Valley, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = f"localhost:{mtls_server.port}"
    files = ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    monkeypatch.setenv("VALLEY_TOKEN", TOKENS["a"])
    result = CliRunner().invoke(cli, ["list", "--server", server, *files, "-o", "json"])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("VALLEY_TOKEN")
    result = CliRunner().invoke(cli, ["list", "--server", server, *files])
    assert result.exit_code == 1 and "UNAUTHENTICATED" in result.output
    # the files from the environment, the token as an option
    monkeypatch.setenv("VALLEY_CA", str(pki.ca))
    monkeypatch.setenv("VALLEY_CERT", str(pki.client_cert))
    monkeypatch.setenv("VALLEY_KEY", str(pki.client_key))
    result = CliRunner().invoke(cli, ["sites", "--server", server, "--token", TOKENS["b"]])
    assert result.exit_code == 0, result.output
