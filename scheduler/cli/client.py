"""What every client command shares: the connection, gRPC errors as one-line messages, the
``--server``/``--output``/``--timeout`` options, and printing for people or machines.

A command written with ``client_command`` is only its own logic: it receives an ``Api`` and
returns what it found as ``Shown``::

    @click.command()
    @click.argument("workload_id")
    @client_command
    def get(api: Api, workload_id: str) -> Shown:
        return Shown(api.call(api.placement.GetWorkload, ...), workload_detail)
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
# the google.rpc.ErrorInfo reason of an UNAVAILABLE the server itself sent: it is up, its store
# is not (a connection failure carries no such detail)
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
MAX_PEM_BYTES = 1 << 20
MAX_TOKEN_CHARS = 4096

R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect: the server, a bearer token, and TLS files (``ca`` to
    verify the server, ``cert`` and ``key`` for mutual TLS)."""

    server: str = DEFAULT_SERVER
    token: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def tls(self) -> bool:
        return bool(self.ca or self.cert)

    def __str__(self) -> str:  # never the token
        return self.server


def _pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()[: MAX_PEM_BYTES + 1]
    except OSError as e:
        raise click.ClickException(f"cannot read the {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise click.ClickException(f"the {what} {path} is not a PEM file")
    return data


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends ``authorization: Bearer <token>`` with every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(d.metadata or ()), self._header]
        return _CallDetails(
            d.method,
            d.timeout,
            metadata,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def open_channel(target: Target | str) -> grpc.Channel:
    """A channel to ``target``: TLS when it names a CA or a client certificate, its token sent
    with every call."""
    if isinstance(target, str):
        target = Target(target)
    if target.token and len(target.token) > MAX_TOKEN_CHARS:
        raise click.ClickException(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if bool(target.cert) != bool(target.key):
        raise click.ClickException("--cert and --key go together")
    if target.tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(target.ca, "CA") if target.ca else None,
            private_key=_pem(target.key, "key") if target.key else None,
            certificate_chain=_pem(target.cert, "certificate") if target.cert else None,
        )
        channel = grpc.secure_channel(target.server, credentials)
    else:
        channel = grpc.insecure_channel(target.server)
    if target.token:
        channel = grpc.intercept_channel(channel, _Bearer(target.token))
    return channel


class Api:
    """The server's placement, cluster and operator services over one channel."""

    def __init__(self, channel: grpc.Channel, timeout: float | None) -> None:
        self.placement = pb_grpc.PlacementServiceStub(channel)
        self.cluster = pb_grpc.ClusterServiceStub(channel)
        self.operator = pb_grpc.OperatorServiceStub(channel)
        self.timeout = timeout

    def call(self, method: Callable[..., R], request: Message) -> R:
        """One unary call with the command's ``--timeout``."""
        return method(request, timeout=self.timeout)


@contextlib.contextmanager
def connect(target: Target | str, timeout: float | None) -> Iterator[Api]:
    """An ``Api`` for the block; a gRPC error leaving the block becomes a one-line
    ``ClickException`` (no traceback) that says what to do about it."""
    channel = open_channel(target)
    try:
        yield Api(channel, timeout)
    except grpc.RpcError as e:
        raise rpc_failure(e, str(target)) from None
    finally:
        channel.close()


def rpc_failure(e: grpc.RpcError, server: str) -> click.ClickException:
    """A failed call as a message for people: unreachable, store down, too slow, or the
    server's status (with every field violation of an INVALID_ARGUMENT)."""
    code = e.code()  # the RpcError of a call is also a grpc.Call
    details = e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        if STORE_UNAVAILABLE in error_reasons(e):
            return click.ClickException(
                f"the Valley server at {server} is reachable but its store is unavailable "
                f"({details}); retry later"
            )
        return click.ClickException(
            f"cannot reach the Valley server at {server} ({details or 'unavailable'}); "
            "is `valley serve` running there? (--server HOST:PORT)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return click.ClickException(f"the server at {server} did not answer in time (--timeout)")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return click.ClickException(f"{code.name}: {details} (--token or $VALLEY_TOKEN)")
    listed = field_violations(e)
    if len(listed) > 1:
        lines = "".join(f"\n  {field}: {description}" for field, description in listed)
        return click.ClickException(f"{code.name}: {details}{lines}")
    return click.ClickException(f"{code.name}: {details}")


def _details(e: grpc.RpcError) -> list[Any]:
    """The ``google.rpc.Status`` details the server attached to the failed call."""
    try:
        status = rpc_status.from_call(e)
    except ValueError:  # a status that contradicts the call's: ignore the details
        return []
    return list(status.details) if status is not None else []


def field_violations(e: grpc.RpcError) -> list[tuple[str, str]]:
    """Every (field, description) of the call's ``google.rpc.BadRequest`` detail."""
    out: list[tuple[str, str]] = []
    for detail in _details(e):
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [(v.field, v.description) for v in bad.field_violations]
    return out


def error_reasons(e: grpc.RpcError) -> set[str]:
    """The ``reason`` of every ``google.rpc.ErrorInfo`` detail of the call."""
    out = set()
    for detail in _details(e):
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            out.add(info.reason)
    return out


def server_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--server HOST:PORT`` (or ``$VALLEY_SERVER``) with ``--token``, ``--ca``, ``--cert``
    and ``--key`` (or ``$VALLEY_TOKEN``, ...): ``fn`` receives them as one ``server: Target``."""

    @functools.wraps(fn)
    def with_target(
        server: str,
        token: str | None,
        ca: str | None,
        cert: str | None,
        key: str | None,
        **options: Any,
    ) -> Any:
        return fn(server=Target(server, token, ca, cert, key), **options)

    pem = click.Path(exists=True, dir_okay=False)
    options = (
        click.option(
            "--server",
            envvar="VALLEY_SERVER",
            default=DEFAULT_SERVER,
            show_default=True,
            show_envvar=True,
            help="HOST:PORT of the Valley server",
        ),
        click.option(
            "--token",
            envvar="VALLEY_TOKEN",
            show_envvar=True,
            default=None,
            help="bearer token (for a server run with --auth); best given through the environment",
        ),
        click.option(
            "--ca",
            envvar="VALLEY_CA",
            show_envvar=True,
            type=pem,
            help="CA to verify the server's certificate (PEM); turns TLS on",
        ),
        click.option(
            "--cert",
            envvar="VALLEY_CERT",
            show_envvar=True,
            type=pem,
            help="client certificate (PEM) for mutual TLS; turns TLS on",
        ),
        click.option(
            "--key", envvar="VALLEY_KEY", show_envvar=True, type=pem, help="client key (PEM)"
        ),
    )
    wrapped: Callable[..., Any] = with_target
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def output_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--output/-o table|json``."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=help,
    )


def as_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: the proto's field names, every field present."""
    out: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


@dataclass(frozen=True)
class Shown:
    """What a client command found: ``data`` (a message or a list of messages) is printed as
    JSON with ``-o json``; otherwise ``render(data)`` for people, then ``note`` on stderr."""

    data: Any
    render: Callable[[Any], str]
    note: str = ""

    def echo(self, output: str) -> None:
        if output == "json":
            value = (
                [as_dict(m) for m in self.data]
                if isinstance(self.data, Sequence)
                else as_dict(self.data)
            )
            click.echo(json.dumps(value, indent=2, ensure_ascii=False))
            return
        click.echo(self.render(self.data))
        if self.note:
            click.echo(f"\n{self.note}", err=True)


def client_command(fn: Callable[..., Shown]) -> Callable[..., None]:
    """Make ``fn(api, **options) -> Shown`` a command body: adds ``--server``, ``--output`` and
    ``--timeout``, connects, turns gRPC errors into messages, prints what ``fn`` returns."""

    @functools.wraps(fn)
    def command(server: Target, output: str, timeout: float, **options: Any) -> None:
        with connect(server, timeout) as api:
            shown = fn(api, **options)
        shown.echo(output)

    return server_option(output_option("table for people, json for machines")(_timeout(command)))


_timeout = click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="seconds to wait for the server",
)
