"""Deferrable work over real gRPC with a real SQLite store: an impossible deadline is
INVALID_ARGUMENT naming the field; with a forecast file (as ``valley serve --forecast``) that
makes a later hour cheap, a deferrable job is PLACED to start then, GetWorkload and
``valley get`` show its start, and ListSites (``valley sites``) its reserved cores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.cli.tables import planned_rows, site_tables, workload_detail
from scheduler.config import Valley, ValleyConfig
from scheduler.domain import Scenario
from scheduler.loop import LoopConfig
from tests.test_service_support import Client, until


def hour_floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def cheap_hour() -> datetime:
    """Two hours ahead: green's energy nearly free then."""
    return hour_floor(datetime.now(UTC)) + timedelta(hours=2)


@pytest.fixture(scope="module")
def client(
    tiny: Scenario, tmp_path_factory: pytest.TempPathFactory, cheap_hour: datetime
) -> Iterator[Client]:
    directory = Path(tmp_path_factory.mktemp("time"))
    forecast = directory / "forecast.json"
    forecast.write_text(
        json.dumps(
            {
                "start": cheap_hour.isoformat(),
                "sites": {"green": {"price_cny_per_kwh": [0.01], "carbon_kg_per_kwh": [0.0]}},
            }
        )
    )
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=f"sqlite:///{directory}/valley.db",
        loop=LoopConfig(batch_window_s=0.01),
        forecast_file=str(forecast),
    )
    valley = Valley(config, scenario=tiny).start()
    c = Client.connect(valley.port)
    try:
        yield c
    finally:
        c.close()
        valley.stop(grace=1.0)


def batch(duration_s: int, deadline: datetime) -> pb.WorkloadSpec:
    ts = Timestamp()
    ts.FromDatetime(deadline)
    return pb.WorkloadSpec(
        tenant="acme",
        resources=pb.Resources(cpu_millis=2000, memory_mib=1024),
        kind=pb.WORKLOAD_KIND_BATCH,
        duration_s=duration_s,
        deadline=ts,
    )


def test_a_deadline_that_cannot_be_met_is_invalid_argument_naming_the_field(
    client: Client,
) -> None:
    spec = batch(7200, datetime.now(UTC) + timedelta(hours=1))
    ok = batch(60, datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(grpc.RpcError) as e:
        client.submit([ok, spec])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (e.value.details() or "").startswith("workloads[1].deadline")


def test_deferrable_work_is_placed_to_start_at_the_cheap_hour_and_shown(
    client: Client, cheap_hour: datetime
) -> None:
    (w,) = client.submit([batch(3600, datetime.now(UTC) + timedelta(hours=10))])
    until(lambda: client.get(w.id).state == pb.WORKLOAD_STATE_PLACED)
    got = client.get(w.id)
    assert got.placements[0].start_time.ToDatetime(tzinfo=UTC) == cheap_hour
    assert got.placements[0].site == "green"
    assert "starts:" in workload_detail(got)
    sites = client.cluster.ListSites(pb.ListSitesRequest(), timeout=10)
    green = next(s for s in sites.sites if s.name == "green")
    ahead = round((cheap_hour - sites.reserved_from.ToDatetime(tzinfo=UTC)).total_seconds() / 3600)
    assert green.reserved_cores_by_hour[ahead] == pytest.approx(2.0)
    assert green.allocated.cpu_millis == 0  # reserved, not started
    assert "RESERVED CORES" in site_tables(sites, nodes=False)


def test_a_service_starts_at_once_whatever_the_forecast(client: Client) -> None:
    spec = pb.WorkloadSpec(
        tenant="acme",
        resources=pb.Resources(cpu_millis=1000, memory_mib=1024),
        kind=pb.WORKLOAD_KIND_SERVICE,
    )
    (w,) = client.submit([spec])
    until(lambda: client.get(w.id).state == pb.WORKLOAD_STATE_PLACED)
    got = client.get(w.id)
    assert got.placements[0].start_time == got.placed_at


def test_a_plan_shows_the_start_a_submission_would_be_reserved(
    client: Client, cheap_hour: datetime
) -> None:
    spec = batch(1800, datetime.now(UTC) + timedelta(hours=10))
    resp = client.placement.PlanWorkloads(pb.SubmitWorkloadsRequest(workloads=[spec]), timeout=30)
    (planned,) = resp.workloads
    assert planned.state == pb.WORKLOAD_STATE_PLACED and planned.id == ""
    assert planned.placements[0].start_time.ToDatetime(tzinfo=UTC) == cheap_hour
    assert cheap_hour.strftime("%H:%M") in planned_rows([planned])
    (w,) = client.submit([spec])
    until(lambda: client.get(w.id).state == pb.WORKLOAD_STATE_PLACED)
    assert client.get(w.id).placements[0].start_time == planned.placements[0].start_time
