"""Errors as gRPC status codes, in one place.

Servicer methods raise domain and store exceptions; ``unary`` and ``streaming`` turn them into
status codes with a message a person understands. Nothing a client sends may end as UNKNOWN:
an unexpected exception is logged and answered INTERNAL (a bug of ours, never of the request).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from scheduler.domain import ValidationError, shorten
from scheduler.store import NotFoundError, PreconditionError, StoreError

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RpcFailure(Exception):
    """Fail the RPC with ``code`` and ``message``, and ``details`` (google.rpc messages such as
    ``QuotaFailure``) in the status's details when given."""

    def __init__(
        self, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)


class BadRequest:
    """Stands in for a request message that could not be parsed (see server._parser)."""

    def __init__(self, error: str) -> None:
        self.error = error


# A client's deadline reaches the server rounded up (a call made with a microsecond left shows
# up with about half a millisecond), and no write commits in less than a millisecond: work with
# less than this left is refused rather than done for a client that has already given up on it.
MIN_REMAINING_S = 0.002


def check_deadline(context: grpc.ServicerContext) -> None:
    """Refuse to start (or to commit) work the client has already given up on."""
    remaining = context.time_remaining()
    if remaining is not None and remaining < MIN_REMAINING_S:
        raise RpcFailure(
            grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the work began"
        )


# an UNAVAILABLE the server sends itself says so (google.rpc.ErrorInfo), so that a client
# tells "server up, store down" from "server unreachable"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
ERROR_DOMAIN = "valley.v1"
# no error message may come near the metadata limit of gRPC clients (~8 KB with every trailer)
MAX_MESSAGE = 1000


def code_of(e: BaseException) -> grpc.StatusCode:
    """The status code ``e`` ends an RPC with (what ``status_of`` answers, without logging)."""
    if isinstance(e, RpcFailure):
        return e.code
    for kind, code in _CODES:
        if isinstance(e, kind):
            return code
    return grpc.StatusCode.INTERNAL


_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def status_of(e: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message ``e`` ends an RPC with; logs a store failure or a bug."""
    code = code_of(e)
    if isinstance(e, RpcFailure):
        return code, e.message
    if isinstance(e, StoreError):
        log.error("store unavailable: %s", e)
        return code, "the store is unavailable; retry later"
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in an RPC handler", exc_info=e)
        return code, "internal error (logged on the server)"
    return code, str(e)


def _reject_unparsed(request: Any) -> None:
    if isinstance(request, BadRequest):
        raise ValidationError("request", f"cannot be parsed: {shorten(request.error)}")


def bad_request(e: ValidationError) -> error_details_pb2.BadRequest:
    """The ``google.rpc.BadRequest`` detail of ``e``: every violation it gathered (or itself)."""
    detail = error_details_pb2.BadRequest()
    for v in getattr(e, "violations", (e,)):
        detail.field_violations.add(field=v.field, description=v.message)
    return detail


def rich_status(e: BaseException) -> grpc.Status:
    """What the RPC answers for ``e``: its code, its message (cut to ``MAX_MESSAGE``) and its
    details: for INVALID_ARGUMENT a ``google.rpc.BadRequest`` listing every field violation, for
    an unavailable store an ``ErrorInfo``, and those an ``RpcFailure`` carries (``QuotaFailure``).
    """
    code, message = status_of(e)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=shorten(message, MAX_MESSAGE)
    )
    details: list[Message] = list(e.details) if isinstance(e, RpcFailure) else []
    if isinstance(e, ValidationError):
        details.append(bad_request(e))
    elif isinstance(e, StoreError):
        details.append(error_details_pb2.ErrorInfo(reason=STORE_UNAVAILABLE, domain=ERROR_DOMAIN))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def unary(
    fn: Callable[[Any, Req, grpc.ServicerContext], Resp],
) -> Callable[[Any, Req, grpc.ServicerContext], Resp]:
    @functools.wraps(fn)
    def handler(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            _reject_unparsed(request)
            return fn(self, request, context)
        except Exception as e:
            status = rich_status(e)
        context.abort_with_status(status)
        raise AssertionError("unreachable: abort raises")

    return handler


def streaming(
    fn: Callable[[Any, Req, grpc.ServicerContext], Iterator[Resp]],
) -> Callable[[Any, Req, grpc.ServicerContext], Iterator[Resp]]:
    @functools.wraps(fn)
    def handler(self: Any, request: Req, context: grpc.ServicerContext) -> Iterator[Resp]:
        try:
            _reject_unparsed(request)
            yield from fn(self, request, context)
            return
        except Exception as e:
            status = rich_status(e)
        context.abort_with_status(status)

    return handler
