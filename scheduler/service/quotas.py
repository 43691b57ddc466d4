"""Per-tenant quotas and submission rates (the ``[quotas.<tenant>]`` tables of the auth file).

A quota bounds what a tenant's PENDING and PLACED workloads hold: resources x replicas, a whole
GPU counting 1000 GPU millis. ``admission`` turns a request's specs into the check the store
runs inside the transaction that would insert them (so two concurrent batches cannot both pass
on the same room). ``RateLimiter`` is a token bucket per tenant: ``submissions_per_second``
workloads a second, bursts up to one second's worth.

A refusal over the rate is not answered at once: it is held until the tenant's tokens for the
request would have come back (at most ``MAX_HOLD_S``). A client that retries as soon as it is
refused then costs the server a request per refill instead of thousands a second - in Python
gRPC, receiving a request costs the server about as much as refusing it, so a fast refusal loop
takes the CPU the other tenants' submissions need. A bounded number of holds at once, per
tenant and in all (``ServerLimits``), keeps the held threads a share of the server's; past them
a refusal is answered at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2

from scheduler.domain import Resources, WorkloadSpec
from scheduler.service.errors import RpcFailure
from scheduler.store import Admit

RESOURCE_KEYS = ("cpu_millis", "memory_mib", "gpu_millis")
MAX_HOLD_S = 1.0  # the longest a refusal over the rate is held


@dataclass(frozen=True, slots=True)
class Quota:
    """A tenant's limits; None: no limit of that kind."""

    cpu_millis: int | None = None
    memory_mib: int | None = None
    gpu_millis: int | None = None
    submissions_per_second: float | None = None

    @property
    def limits_resources(self) -> bool:
        return any(getattr(self, k) is not None for k in RESOURCE_KEYS)


def amounts(r: Resources) -> dict[str, int]:
    """A resource vector in quota terms (whole GPUs as 1000 millis each)."""
    return {
        "cpu_millis": r.cpu_millis,
        "memory_mib": r.memory_mib,
        "gpu_millis": r.gpu_demand_millis,
    }


def asked_by_tenant(specs: Sequence[WorkloadSpec]) -> dict[str, Resources]:
    """What each tenant's specs would hold: resources x replicas, summed."""
    out: dict[str, Resources] = {}
    for s in specs:
        total = s.resources.scaled(s.replicas)
        out[s.tenant] = out[s.tenant] + total if s.tenant in out else total
    return out


def admission(specs: Sequence[WorkloadSpec], quotas: Mapping[str, Quota]) -> Admit | None:
    """The check of ``specs`` against the quotas of their tenants, given what each tenant holds
    now: None to admit, or the RESOURCE_EXHAUSTED failure to refuse the whole request with.
    None (no check at all) when no tenant of the request has a resource quota."""
    asked = asked_by_tenant(specs)
    limited = {t: quotas[t] for t in asked if t in quotas and quotas[t].limits_resources}
    if not limited:
        return None

    def admit(held: Mapping[str, Resources]) -> Exception | None:
        for tenant, quota in limited.items():
            now = amounts(held.get(tenant, Resources()))
            more = amounts(asked[tenant])
            for key in RESOURCE_KEYS:
                limit = getattr(quota, key)
                if limit is not None and now[key] + more[key] > limit:
                    return quota_failure(tenant, key, limit, now[key], more[key])
        return None

    return admit


def quota_failure(tenant: str, key: str, limit: int, held: int, asked: int) -> RpcFailure:
    """RESOURCE_EXHAUSTED naming the resource, the limit and the amount asked, in the message
    and in a ``google.rpc.QuotaFailure`` detail."""
    description = (
        f"{key}: quota {limit}, held by PENDING and PLACED workloads {held}, asked {asked}"
    )
    detail = error_details_pb2.QuotaFailure(
        violations=[
            error_details_pb2.QuotaFailure.Violation(
                subject=f"tenant:{tenant}",
                description=description,
                quota_metric=key,
                quota_value=limit,
            )
        ]
    )
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"quota exceeded for tenant {tenant!r}: {description}; nothing of the request was stored",
        details=(detail,),
    )


def rate_failure(tenant: str, rate: float, asked: int, retry_in_s: float) -> RpcFailure:
    """RESOURCE_EXHAUSTED over the submission rate, with a ``google.rpc.QuotaFailure`` and a
    ``google.rpc.RetryInfo`` saying when the request's tokens are back (never, for a request
    larger than one second's worth: then the delay is one day)."""
    description = f"submissions_per_second: quota {rate:g} workloads a second, asked {asked}"
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromNanoseconds(int(min(retry_in_s, 86_400.0) * 1e9))
    detail = error_details_pb2.QuotaFailure(
        violations=[
            error_details_pb2.QuotaFailure.Violation(
                subject=f"tenant:{tenant}",
                description=description,
                quota_metric="submissions_per_second",
                quota_value=int(rate),
            )
        ]
    )
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"submission rate exceeded for tenant {tenant!r}: {description}; retry later",
        details=(detail, retry),
    )


class RateLimiter:
    """A token bucket per tenant: ``rate`` tokens a second, at most ``rate`` held (a burst of
    one second's worth). A workload costs one token; a request takes all its tokens or none."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # tenant: rate, tokens, at

    def take(self, tenant: str, rate: float, n: int) -> bool:
        """Whether ``n`` submissions of ``tenant`` fit its bucket now (they are taken if so)."""
        now = self._clock()
        with self._lock:
            old_rate, tokens, at = self._buckets.get(tenant, (rate, rate, now))
            if old_rate != rate:  # the auth file was reloaded with another rate: start full
                tokens, at = rate, now
            tokens = min(rate, tokens + (now - at) * rate)
            ok = n <= tokens
            if ok:
                tokens -= n
            self._buckets[tenant] = (rate, tokens, now)
            return ok

    def refill_s(self, tenant: str, rate: float, n: int) -> float:
        """Seconds until ``tenant``'s bucket holds ``n`` tokens (inf: more than it ever holds)."""
        if n > rate:
            return math.inf
        now = self._clock()
        with self._lock:
            _, tokens, at = self._buckets.get(tenant, (rate, rate, now))
            return max(0.0, (n - min(rate, tokens + (now - at) * rate)) / rate)


class RefusalHolds:
    """Counts the refusals held now, per tenant and in all."""

    def __init__(self, per_tenant: int = 16, total: int = 32) -> None:
        self._per_tenant = per_tenant
        self._total = total
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def wait(self, tenant: str, seconds: float) -> None:
        """Wait ``seconds`` before the caller answers, when a hold is free (else not at all)."""
        with self._lock:
            if seconds <= 0 or self._held.get(tenant, 0) >= self._per_tenant:
                return
            if sum(self._held.values()) >= self._total:
                return
            self._held[tenant] = self._held.get(tenant, 0) + 1
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._held[tenant] -= 1
                if not self._held[tenant]:
                    del self._held[tenant]
