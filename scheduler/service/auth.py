"""Who is calling: bearer tokens mapped to a tenant or to the operator role, and what each may
see (``valley serve --auth FILE.toml``; API.md, "Identity, roles and quotas").

``Auth`` holds the parsed file (re-read by ``reload``, on SIGHUP); ``AuthInterceptor`` answers
UNAUTHENTICATED for a missing or unknown token on every RPC but the health service; servicers
ask ``Auth.caller(context)`` who called and scope what they do with ``Caller``'s methods.
Without ``--auth`` every caller is the trusted ``ANONYMOUS`` (local development).

A token is known by its SHA-256 (looked up among the configured hashes); neither a token nor a
hash ever reaches a log line or an error message.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import grpc

from scheduler.service.errors import RpcFailure, rich_status
from scheduler.service.quotas import MAX_HOLD_S, Quota, RateLimiter, RefusalHolds, rate_failure

log = logging.getLogger(__name__)

MAX_AUTH_FILE_BYTES = 1 << 20
MAX_TOKENS = 1000  # every hash is compared on every call
MAX_NAME = 128
MAX_TENANT = 253
MAX_TOKEN_CHARS = 4096
MAX_QUOTA = 1 << 62
OPERATOR = "operator"
HEALTH_SERVICE = "grpc.health.v1.Health"
_BEARER = "bearer "


class AuthFileError(ValueError):
    """The auth file cannot be used; the message never contains a token hash."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a call: ``name`` (the token's name, for the audit log) and either a tenant or
    the operator role."""

    name: str
    tenant: str = ""
    operator: bool = False

    def sees(self, tenant: str) -> bool:
        """Whether this caller may see (and act on) a workload of ``tenant``."""
        return self.operator or tenant == self.tenant

    def scope(self, tenant: str, field: str) -> str:
        """The tenant filter a request of this caller means: its own tenant when the request
        names none; PERMISSION_DENIED naming ``field`` when it names another."""
        if self.operator:
            return tenant
        if tenant and tenant != self.tenant:
            raise RpcFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{field}: this token acts for tenant {self.tenant!r} only",
            )
        return self.tenant

    def require_operator(self, what: str) -> None:
        if not self.operator:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, f"{what} needs the operator role")


ANONYMOUS = Caller("anonymous", operator=True)  # no --auth: every caller is trusted


@dataclass(frozen=True)
class AuthConfig:
    """The parsed auth file: (SHA-256 digest, caller) per token, and quotas by tenant."""

    tokens: tuple[tuple[bytes, Caller], ...] = ()
    quotas: Mapping[str, Quota] = field(default_factory=dict)

    @cached_property
    def by_digest(self) -> Mapping[bytes, Caller]:
        """The callers by their token's digest. Looking a digest up tells a caller's timing
        about the digest only, and a digest does not lead back to a token (SHA-256 is
        preimage-resistant), so the lookup need not be constant-time; it is constant in the
        number of tokens, which a walk over them (up to 1,000 per RPC) was not."""
        return dict(self.tokens)


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise AuthFileError(f"{where} must be a non-empty string")
    if len(value) > limit or "\x00" in value:
        raise AuthFileError(f"{where} must be at most {limit} characters, without NUL")
    return value


def _token(entry: Any, i: int) -> tuple[bytes, Caller]:
    where = f"tokens[{i}]"
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where} must be a table")
    unknown = set(entry) - {"name", "sha256", "tenant", "role"}
    if unknown:
        raise AuthFileError(f"{where}: unknown keys {sorted(k[:40] for k in unknown)}")
    name = _text(entry.get("name"), f"{where}.name", MAX_NAME)
    digest = entry.get("sha256")
    try:
        raw = bytes.fromhex(digest) if isinstance(digest, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise AuthFileError(f"{where}.sha256 (token {name!r}) must be 64 hex digits")
    role, tenant = entry.get("role"), entry.get("tenant")
    if (role is None) == (tenant is None):
        raise AuthFileError(f"{where} (token {name!r}) needs exactly one of tenant and role")
    if role is not None:
        if role != OPERATOR:
            raise AuthFileError(f"{where}.role (token {name!r}) must be {OPERATOR!r}")
        return raw, Caller(name, operator=True)
    return raw, Caller(name, tenant=_text(tenant, f"{where}.tenant", MAX_TENANT))


def _quota(tenant: str, table: Any) -> Quota:
    where = f"quotas.{tenant[:64]}"
    if not isinstance(table, dict):
        raise AuthFileError(f"{where} must be a table")
    unknown = set(table) - {"cpu_millis", "memory_mib", "gpu_millis", "submissions_per_second"}
    if unknown:
        raise AuthFileError(f"{where}: unknown keys {sorted(k[:40] for k in unknown)}")
    values: dict[str, Any] = {}
    for key, v in table.items():
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if key == "submissions_per_second":
            if not number or not 0 < v <= 1e9:
                raise AuthFileError(f"{where}.{key} must be a number in (0, 1e9]")
            values[key] = float(v)
        else:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_QUOTA:
                raise AuthFileError(f"{where}.{key} must be an integer >= 0")
            values[key] = v
    return Quota(**values)


def parse_auth(text: str) -> AuthConfig:
    """The auth file's content; raises AuthFileError saying what is wrong and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AuthFileError(f"not valid TOML: {e}") from None
    unknown = set(data) - {"tokens", "quotas"}
    if unknown:
        raise AuthFileError(f"unknown top-level keys {sorted(k[:40] for k in unknown)}")
    entries = data.get("tokens", [])
    if not isinstance(entries, list):
        raise AuthFileError("tokens must be an array of tables ([[tokens]])")
    if len(entries) > MAX_TOKENS:
        raise AuthFileError(f"at most {MAX_TOKENS} tokens (got {len(entries)})")
    tokens = tuple(_token(e, i) for i, e in enumerate(entries))
    seen: set[bytes] = set()
    for i, (digest, caller) in enumerate(tokens):
        if digest in seen:
            raise AuthFileError(f"tokens[{i}] (token {caller.name!r}) repeats another's sha256")
        seen.add(digest)
    quotas = data.get("quotas", {})
    if not isinstance(quotas, dict):
        raise AuthFileError("quotas must be a table of tables ([quotas.TENANT])")
    return AuthConfig(
        tokens, {_text(t, "a quotas tenant", MAX_TENANT): _quota(t, q) for t, q in quotas.items()}
    )


def load_auth(path: str) -> AuthConfig:
    """Read and parse the auth file at ``path`` (at most ``MAX_AUTH_FILE_BYTES``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_AUTH_FILE_BYTES + 1)
    except OSError as e:
        raise AuthFileError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_AUTH_FILE_BYTES:
        raise AuthFileError(f"{path} is larger than {MAX_AUTH_FILE_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise AuthFileError(f"{path} is not UTF-8") from None
    return parse_auth(text)


def hash_token(token: str) -> str:
    """The hex SHA-256 the auth file lists for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    """The identity and quota configuration in force. ``Auth()`` (no file): every caller is
    ``ANONYMOUS`` and no quota applies."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._config = load_auth(path) if path else AuthConfig()
        self._lock = threading.Lock()
        self.rates = RateLimiter()
        self.holds = RefusalHolds()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @property
    def quotas(self) -> Mapping[str, Quota]:
        return self._config.quotas

    def reload(self) -> bool:
        """Re-read the file; a broken one keeps the configuration in force (and says why in
        the log). Whether the new file was taken."""
        if self.path is None:
            return False
        try:
            config = load_auth(self.path)
        except AuthFileError as e:
            log.error("auth file %s not reloaded, keeping the previous one: %s", self.path, e)
            return False
        with self._lock:
            self._config = config
        log.info(
            "auth file %s reloaded: %d tokens, quotas for %d tenants",
            self.path,
            len(config.tokens),
            len(config.quotas),
        )
        return True

    def identify(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller:
        """The caller the ``authorization`` metadata names; UNAUTHENTICATED when it names none."""
        if not self.enabled:
            return ANONYMOUS
        token = _bearer(metadata)
        if token is None:
            raise _unauthenticated("missing token: send metadata 'authorization: Bearer <token>'")
        found = self._config.by_digest.get(hashlib.sha256(token.encode()).digest())
        if found is None:
            raise _unauthenticated("unknown token")
        return found

    def caller(self, context: grpc.ServicerContext) -> Caller:
        """Who made the call in ``context``."""
        if not self.enabled:
            return ANONYMOUS
        return self.identify(context.invocation_metadata())

    def take_rate(self, tenant: str, n: int, time_left_s: float | None = None) -> None:
        """Count ``n`` submissions against ``tenant``'s rate; RESOURCE_EXHAUSTED over it, held
        until the tokens would be back (at most ``MAX_HOLD_S``, and never past the call's
        ``time_left_s``) so that retrying at once cannot flood the server."""
        quota = self._config.quotas.get(tenant)
        if quota is None or quota.submissions_per_second is None:
            return
        rate = quota.submissions_per_second
        if self.rates.take(tenant, rate, n):
            return
        wait = self.rates.refill_s(tenant, rate, n)
        hold = min(wait, MAX_HOLD_S)
        if time_left_s is not None:
            hold = min(hold, max(0.0, time_left_s - 0.05))  # the answer still reaches it
        self.holds.wait(tenant, hold)
        raise rate_failure(tenant, rate, n, max(0.0, wait - hold))


def _unauthenticated(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.UNAUTHENTICATED, message)


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key != "authorization" or not isinstance(value, str):
            continue
        if len(value) > MAX_TOKEN_CHARS + len(_BEARER) or value[:7].lower() != _BEARER:
            return None
        return value[len(_BEARER) :].strip() or None
    return None


class AuthInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED, before any handler runs, for a call without a known token; the health
    service stays open (load balancers and kubelets probe it without one)."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.lstrip("/").startswith(HEALTH_SERVICE + "/"):
            return handler
        try:
            self._auth.identify(handler_call_details.invocation_metadata)
        except RpcFailure as e:
            return _refusal(handler, e)
        return handler


def _refusal(handler: grpc.RpcMethodHandler, failure: RpcFailure) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that fails every call with ``failure``."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort_with_status(rich_status(failure))

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
