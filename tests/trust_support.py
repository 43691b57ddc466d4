"""Helpers of the identity, quota and TLS tests (no tests here): an auth file with tokens for two
tenants and an operator, a server that uses it on loopback, and stubs that send a token."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.config import Valley, ValleyConfig
from scheduler.domain import Scenario
from scheduler.loop import LoopConfig
from scheduler.service.auth import hash_token
from scheduler.service.tls import TlsFiles

TOKENS = {"a": "token-of-tenant-a-0123456789", "b": "token-of-tenant-b-9876543210"}
OPERATOR_TOKEN = "token-of-the-operator-555"


def auth_toml(quotas: str = "") -> str:
    """Tokens ``a-ci`` (tenant ``a``), ``b-ci`` (tenant ``b``) and ``ops`` (operator)."""
    return (
        "\n".join(
            f'[[tokens]]\nname = "{t}-ci"\nsha256 = "{hash_token(tok)}"\ntenant = "{t}"\n'
            for t, tok in TOKENS.items()
        )
        + f'[[tokens]]\nname = "ops"\nsha256 = "{hash_token(OPERATOR_TOKEN)}"\n'
        'role = "operator"\n' + quotas
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Stubs:
    """The three services over one channel, every call made with ``token`` (None: without)."""

    channel: grpc.Channel
    placement: pb_grpc.PlacementServiceStub
    cluster: pb_grpc.ClusterServiceStub
    operator: pb_grpc.OperatorServiceStub
    metadata: tuple[tuple[str, str], ...]

    @classmethod
    def over(cls, channel: grpc.Channel, token: str | None) -> Stubs:
        return cls(
            channel,
            pb_grpc.PlacementServiceStub(channel),
            pb_grpc.ClusterServiceStub(channel),
            pb_grpc.OperatorServiceStub(channel),
            bearer(token) if token else (),
        )


@contextlib.contextmanager
def serve_auth(
    scenario: Scenario, directory: Path, auth: str, tls: TlsFiles | None = None
) -> Iterator[Valley]:
    """A server on loopback whose auth file holds ``auth``."""
    path = directory / "auth.toml"
    path.write_text(auth)
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=f"sqlite:///{directory}/valley.db",
        loop=LoopConfig(batch_window_s=0.01),
        auth_file=str(path),
        tls=tls,
    )
    valley = Valley(config, scenario=scenario).start()
    try:
        yield valley
    finally:
        valley.stop(grace=1.0)
