"""Preemption over real gRPC on the Beijing-Hebei scenario: E-Town full of priority-0 batch
work, a priority-2 latency-critical service submitted after is placed within 2 cycles by
displacing one batch job; a watcher sees that job PREEMPTED (reason naming the preemptor), then
PENDING; ``ExplainWorkload`` says who preempted whom; after a restart the displaced job is
placed again once there is room (the preemptor cancelled), and nothing is lost."""

from __future__ import annotations

from pathlib import Path

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.cli.tables import event_line
from scheduler.domain import Scenario
from tests.test_service_support import CANCELLED, PENDING, PLACED, Watching, serve, until

PREEMPTED = pb.WORKLOAD_STATE_PREEMPTED


def batch(i: int) -> pb.WorkloadSpec:
    """One whole E-Town CPU node (64 cores) of priority-0 batch work, pinned to E-Town."""
    return pb.WorkloadSpec(
        tenant="batch",
        name=f"b{i}",
        kind=pb.WORKLOAD_KIND_BATCH,
        resources=pb.Resources(cpu_millis=64_000, memory_mib=1024),
        allowed_sites=["etown"],
    )


LATENCY_CRITICAL = pb.WorkloadSpec(
    tenant="trading",
    name="quotes",
    kind=pb.WORKLOAD_KIND_SERVICE,
    priority=2,
    origin="zhongguancun",
    max_latency_ms=2.0,  # E-Town only (Zhangbei is 4 ms away)
    resources=pb.Resources(cpu_millis=8_000, memory_mib=4096),
)


def test_a_latency_critical_service_displaces_batch_work_in_a_full_etown(
    beijing_hebei: Scenario, tmp_path: Path
) -> None:
    with serve(beijing_hebei, tmp_path) as (valley, client):
        filled = client.submit([batch(i) for i in range(1000)])
        until(lambda: all(w.state == PLACED for w in client.all_workloads("batch")), 120, "full")
        watching = Watching(client, timeout=60)
        seen = watching.seen
        loop = valley.loop
        assert loop is not None
        before = loop.cycles
        (hi,) = client.submit([LATENCY_CRITICAL])
        until(lambda: any(e.workload.id == hi.id and e.workload.state == PLACED for e in seen))
        assert loop.cycles - before <= 2  # placed within 2 cycles
        until(lambda: sum(e.workload.state == PREEMPTED for e in seen) >= 1, 20, "PREEMPTED")
        until(lambda: any(e.previous_state == PREEMPTED for e in seen), 20, "back to PENDING")
        watching.stop()
        (gone,) = [e for e in seen if e.workload.state == PREEMPTED]
        victim = gone.workload.id
        assert gone.previous_state == PLACED and victim in {w.id for w in filled}
        assert f"preempted by {hi.id} (priority 2)" in gone.workload.reason
        (back,) = [e for e in seen if e.previous_state == PREEMPTED]
        assert back.workload.id == victim and back.workload.state == PENDING
        assert client.get(hi.id).placements[0].site == "etown"
        why = client.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=victim), timeout=10)
        assert f"preempted by {hi.id}" in why.summary
        how = client.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=hi.id), timeout=10)
        assert f"displaced {victim} (priority 0)" in how.summary
    with serve(beijing_hebei, tmp_path) as (_, client):  # a restart keeps all of it
        assert client.get(victim).state == PENDING and client.get(hi.id).state == PLACED
        why = client.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=victim), timeout=10)
        assert f"preempted by {hi.id}" in why.summary
        client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=hi.id), timeout=10)
        until(lambda: client.get(victim).state == PLACED, 60, "the victim placed again")
        states = [w.state for w in client.all_workloads("batch")]
        assert states == [PLACED] * 1000  # none lost
        assert client.get(hi.id).state == CANCELLED


def test_valley_watch_shows_a_preempted_workload_and_its_preemptor() -> None:
    e = pb.WorkloadEvent(
        sequence=7,
        previous_state=PLACED,
        workload=pb.Workload(
            id="w-1",
            state=PREEMPTED,
            spec=batch(0),
            reason="preempted by w-2 (priority 2); pending until there is room",
        ),
    )
    line = event_line(e)
    assert "PLACED -> PREEMPTED" in line and "preempted by w-2 (priority 2)" in line
