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
from google.rpc import status_pb2
from grpc_status import rpc_status

from scheduler.domain import ValidationError
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
    if isinstance(e, RpcFailure):
        return e.code, e.message
    if isinstance(e, ValidationError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(e)
    if isinstance(e, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(e)
    if isinstance(e, PreconditionError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(e)
    if isinstance(e, StoreError):
        log.error("store unavailable: %s", e)
        return grpc.StatusCode.UNAVAILABLE, "the store is unavailable; retry later"
    log.exception("unexpected error in an RPC handler", exc_info=e)
    return grpc.StatusCode.INTERNAL, "internal error (logged on the server)"


def _reject_unparsed(request: Any) -> None:
    if isinstance(request, BadRequest):
        raise ValidationError("request", f"cannot be parsed: {request.error}")


def unary(
    fn: Callable[[Any, Req, grpc.ServicerContext], Resp],
) -> Callable[[Any, Req, grpc.ServicerContext], Resp]:
    @functools.wraps(fn)
    def handler(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            _reject_unparsed(request)
            return fn(self, request, context)
        except Exception as e:
            code, message = status_of(e)
            _abort_with_details(context, e, code, message)
        context.abort(code, message)
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
            code, message = status_of(e)
            _abort_with_details(context, e, code, message)
        context.abort(code, message)

    return handler


def _abort_with_details(
    context: grpc.ServicerContext, e: Exception, code: grpc.StatusCode, message: str
) -> None:
    """Abort with a rich status (``grpc-status-details-bin``) when ``e`` carries details."""
    details = getattr(e, "details", ())
    if not details:
        return
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    context.abort_with_status(rpc_status.to_status(status))
