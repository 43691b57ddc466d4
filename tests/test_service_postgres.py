"""The whole service on a PostgreSQL store: placements commit, and a restart resumes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from tests.test_service_support import PENDING, PLACED, cpu_spec, serve, until, wait_settled

pytest_plugins = ["tests.pg"]
pytestmark = pytest.mark.integration


def test_a_server_on_postgresql_places_and_a_restart_resumes_where_it_was(
    tiny: Scenario, tmp_path: Path, postgres_url: str
) -> None:
    share = pb.WorkloadSpec(
        tenant="t", resources=pb.Resources(cpu_millis=500, memory_mib=512, gpu_millis=400)
    )
    with serve(tiny, tmp_path, store_url=postgres_url) as (_, client):
        first = client.submit([cpu_spec(4) for _ in range(6)] + [share, share], request_id="r1")
        before = {w.id: w for w in wait_settled(client)}
        assert sum(w.state == PLACED for w in before.values()) == 7
        waiting = next(w for w in before.values() if w.state == PENDING)
        assert waiting.reason
    with serve(tiny, tmp_path, store_url=postgres_url) as (_, client):
        after = {w.id: w for w in client.all_workloads()}
        assert after.keys() == before.keys()
        for wid, w in before.items():
            assert after[wid].placements == w.placements
        again = client.submit([cpu_spec(4) for _ in range(6)] + [share, share], request_id="r1")
        assert [w.id for w in again] == [w.id for w in first]
        placed = next(
            w for w in after.values() if w.state == PLACED and not w.spec.resources.gpu_millis
        )
        client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=placed.id))
        until(lambda: client.get(waiting.id).state == PLACED, 30, "the waiting workload placed")


def test_text_postgresql_cannot_hold_is_refused_as_invalid_or_not_found(
    tiny: Scenario, tmp_path: Path, postgres_url: str
) -> None:
    import grpc

    with serve(tiny, tmp_path, store_url=postgres_url) as (_, client):
        p = client.placement
        calls = {
            grpc.StatusCode.NOT_FOUND: [
                lambda: p.GetWorkload(pb.GetWorkloadRequest(id="w-\x00")),
                lambda: p.CancelWorkload(pb.CancelWorkloadRequest(id="w-\x00")),
            ],
            grpc.StatusCode.INVALID_ARGUMENT: [
                lambda: p.ListWorkloads(pb.ListWorkloadsRequest(tenant="a\x00")),
                lambda: client.submit([cpu_spec(1, tenant="a\x00")]),
                lambda: client.submit([cpu_spec(1)], request_id="\x00"),
            ],
        }
        for code, fns in calls.items():
            for fn in fns:
                with pytest.raises(grpc.RpcError) as e:
                    fn()
                assert e.value.code() == code
