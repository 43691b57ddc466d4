"""Quotas and submission rates per tenant over real gRPC (API.md, "Identity, roles and quotas"):
exactly at the limit accepted, one millicore over refused with a QuotaFailure, nothing of a
refused batch stored, two concurrent batches never both past the limit, the rate refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.config import Valley
from scheduler.domain import Scenario
from scheduler.service.quotas import RateLimiter, RefusalHolds
from tests.test_service_support import cpu_spec
from tests.trust_support import OPERATOR_TOKEN, TOKENS, Stubs, auth_toml, serve_auth

QUOTAS = """
[quotas.a]
cpu_millis = 3000
gpu_millis = 1500

[quotas.b]
submissions_per_second = 5
"""


@pytest.fixture
def valley(tiny: Scenario, tmp_path: Path) -> Iterator[Valley]:
    with serve_auth(tiny, tmp_path, auth_toml(QUOTAS)) as v:
        yield v


@pytest.fixture
def channel(valley: Valley) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{valley.port}")
    grpc.channel_ready_future(ch).result(timeout=20)
    yield ch
    ch.close()


def submit(s: Stubs, specs: list[pb.WorkloadSpec]) -> list[pb.Workload]:
    resp = s.placement.SubmitWorkloads(
        pb.SubmitWorkloadsRequest(workloads=specs), metadata=s.metadata, timeout=30
    )
    return list(resp.workloads)


def refused(s: Stubs, specs: list[pb.WorkloadSpec]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        submit(s, specs)
    return info.value


def stored(s: Stubs) -> int:
    page = s.placement.ListWorkloads(pb.ListWorkloadsRequest(page_size=1000), metadata=s.metadata)
    return len(page.workloads)


def millicores(m: int, replicas: int = 1, tenant: str = "") -> pb.WorkloadSpec:
    spec = cpu_spec(0, tenant=tenant, replicas=replicas)
    spec.resources.cpu_millis = m
    return spec


def quota_failure(e: grpc.RpcError) -> error_details_pb2.QuotaFailure:
    status = rpc_status.from_call(e)  # type: ignore[arg-type]
    assert status is not None
    (detail,) = [d for d in status.details if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
    out = error_details_pb2.QuotaFailure()
    assert detail.Unpack(out)
    return out


def test_a_batch_exactly_at_the_quota_is_accepted_and_one_millicore_more_is_refused(
    channel: grpc.Channel,
) -> None:
    a = Stubs.over(channel, TOKENS["a"])
    # 2 replicas x 1000 + 999 + 1 = 3000: exactly the quota, in one batch
    assert len(submit(a, [millicores(1000, 2), millicores(999), millicores(1)])) == 3
    e = refused(a, [millicores(1)])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = e.details() or ""
    assert "cpu_millis" in details and "3000" in details and "asked 1" in details
    (violation,) = quota_failure(e).violations
    assert violation.quota_metric == "cpu_millis" and violation.quota_value == 3000
    assert violation.subject == "tenant:a" and "asked 1" in violation.description
    assert stored(a) == 3


def test_nothing_of_a_batch_over_the_quota_is_stored(channel: grpc.Channel) -> None:
    a = Stubs.over(channel, TOKENS["a"])
    e = refused(a, [millicores(1000), millicores(1000), millicores(1001)])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "asked 3001" in (e.details() or "")
    assert stored(a) == 0
    # whole GPUs count 1000 GPU millis each: 2 GPUs > 1500
    gpus = millicores(100)
    gpus.resources.gpus = 2
    assert "gpu_millis" in (refused(a, [gpus]).details() or "")
    assert stored(a) == 0


def test_a_plan_over_the_quota_is_refused_as_the_submission_would_be(
    channel: grpc.Channel,
) -> None:
    a = Stubs.over(channel, TOKENS["a"])
    submit(a, [millicores(2500)])

    def plan(m: int) -> list[pb.Workload]:
        req = pb.SubmitWorkloadsRequest(workloads=[millicores(m)])
        return list(a.placement.PlanWorkloads(req, metadata=a.metadata, timeout=30).workloads)

    assert len(plan(500)) == 1  # exactly the quota with what a holds
    with pytest.raises(grpc.RpcError) as info:
        plan(501)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "held by PENDING and PLACED workloads 2500, asked 501" in (info.value.details() or "")
    assert quota_failure(info.value).violations[0].quota_metric == "cpu_millis"
    assert stored(a) == 1


def test_two_concurrent_batches_never_both_take_the_last_room(channel: grpc.Channel) -> None:
    a = Stubs.over(channel, TOKENS["a"])
    submit(a, [millicores(1200, 2)])  # 2400 of 3000 held: room for one batch of 400, not two
    for round_ in range(5):
        ok: list[list[pb.Workload]] = []
        codes: list[grpc.StatusCode] = []
        start = threading.Barrier(2)

        def one(
            ok: list[list[pb.Workload]] = ok,
            codes: list[grpc.StatusCode] = codes,
            start: threading.Barrier = start,
        ) -> None:
            start.wait()
            try:
                ok.append(submit(a, [millicores(200)] * 2))
            except grpc.RpcError as e:
                codes.append(e.code())

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(ok) == 1 and codes == [grpc.StatusCode.RESOURCE_EXHAUSTED], round_
        for w in ok[0]:  # room again for the next round
            a.placement.CancelWorkload(pb.CancelWorkloadRequest(id=w.id), metadata=a.metadata)
    assert stored(a) == 1 + 5 * 2


def test_the_operator_submitting_for_a_tenant_is_held_to_its_quota(
    channel: grpc.Channel,
) -> None:
    ops = Stubs.over(channel, OPERATOR_TOKEN)
    e = refused(ops, [millicores(3001, tenant="a")])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(submit(ops, [millicores(3001, tenant="b")])) == 1  # b has no resource quota


def test_submissions_over_the_tenants_rate_are_refused(channel: grpc.Channel) -> None:
    b = Stubs.over(channel, TOKENS["b"])
    a = Stubs.over(channel, TOKENS["a"])
    assert len(submit(b, [millicores(10)] * 5)) == 5  # a burst of one second's worth
    e = refused(b, [millicores(10)])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "submissions_per_second" in (e.details() or "")
    assert quota_failure(e).violations[0].quota_metric == "submissions_per_second"
    assert len(submit(a, [millicores(10)])) == 1  # another tenant's rate is its own


def test_the_rate_limiter_refills_at_its_rate_up_to_one_seconds_worth() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.take("t", 10, 10)
    assert not limiter.take("t", 10, 1)
    now[0] = 0.5
    assert limiter.take("t", 10, 5) and not limiter.take("t", 10, 1)
    now[0] = 100.0  # idle for long: still at most one second's worth
    assert not limiter.take("t", 10, 11)
    assert limiter.take("t", 10, 10)


def retry_info(e: grpc.RpcError) -> error_details_pb2.RetryInfo | None:
    status = rpc_status.from_call(e)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info
    return None


def test_a_refusal_over_the_rate_is_held_until_the_tokens_would_be_back(
    channel: grpc.Channel,
) -> None:
    b = Stubs.over(channel, TOKENS["b"])
    assert len(submit(b, [millicores(10)] * 5)) == 5  # the bucket (5 a second) is empty now
    started = time.monotonic()
    e = refused(b, [millicores(10)] * 3)  # 3 tokens come back in 0.6 s
    held = time.monotonic() - started
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert held >= 0.5, held  # a client retrying at once cannot spin the server
    info = retry_info(e)
    assert info is not None and info.retry_delay.ToTimedelta().total_seconds() < 0.2
    assert len(submit(b, [millicores(10)] * 3)) == 3  # and the retry gets in


def test_a_held_refusal_answers_before_the_callers_deadline(channel: grpc.Channel) -> None:
    b = Stubs.over(channel, TOKENS["b"])
    submit(b, [millicores(10)] * 5)
    with pytest.raises(grpc.RpcError) as info:
        b.placement.SubmitWorkloads(  # 5 tokens are 1 s away: the hold stops at the deadline
            pb.SubmitWorkloadsRequest(workloads=[millicores(10)] * 5),
            metadata=b.metadata,
            timeout=0.5,
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_info(info.value)
    assert delay is not None and delay.retry_delay.ToTimedelta().total_seconds() > 0.3


def test_a_request_larger_than_a_seconds_worth_is_told_no_retry_helps(
    channel: grpc.Channel,
) -> None:
    b = Stubs.over(channel, TOKENS["b"])
    e = refused(b, [millicores(10)] * 6)  # never fits a bucket of 5
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "asked 6" in (e.details() or "")
    info = retry_info(e)
    assert info is not None and info.retry_delay.ToTimedelta().total_seconds() >= 3600


def test_refusals_held_at_once_are_capped_per_tenant_and_in_all() -> None:
    holds = RefusalHolds(per_tenant=1, total=2)
    started = threading.Barrier(3)
    done: list[float] = []

    def wait(tenant: str) -> None:
        started.wait()
        t = time.monotonic()
        holds.wait(tenant, 0.5)
        done.append(time.monotonic() - t)

    threads = [threading.Thread(target=wait, args=(t,)) for t in ("x", "y")]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.1)  # both holds are taken now
    t = time.monotonic()
    holds.wait("x", 0.5)  # x's one hold is taken: answered at once
    holds.wait("z", 0.5)  # every hold is taken: answered at once
    assert time.monotonic() - t < 0.3
    for th in threads:
        th.join()
    assert min(done) >= 0.45


def test_the_refill_time_counts_the_tokens_held_now() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.take("t", 10, 10)
    assert limiter.refill_s("t", 10, 4) == pytest.approx(0.4)
    now[0] = 0.3
    assert limiter.refill_s("t", 10, 4) == pytest.approx(0.1)
    assert limiter.refill_s("t", 10, 11) == float("inf")
