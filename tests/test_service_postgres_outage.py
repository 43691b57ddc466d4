"""A server on PostgreSQL survives its database: stopped and started again under a running
server, health turns NOT_SERVING and back to SERVING, and submissions and placements resume,
all without restarting the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.domain import Scenario
from tests.pg import PostgresServer, running_postgres
from tests.test_service_support import PLACED, cpu_spec, serve, until

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, as it stops and starts it."""
    with running_postgres() as server:
        yield server


def _health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def test_submissions_and_placements_resume_without_a_restart_when_postgresql_comes_back(
    tiny: Scenario, tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.create_database()
    with serve(tiny, tmp_path, store_url=url) as (valley, client):
        before = client.submit([cpu_spec(1)])
        until(lambda: client.get(before[0].id).state == PLACED, 30, "placed before the outage")
        assert _health(client.channel) == SERVING

        own_postgres.stop()
        until(lambda: _health(client.channel) == NOT_SERVING, 10, "health NOT_SERVING")
        with pytest.raises(grpc.RpcError) as e:
            client.submit([cpu_spec(1)])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE

        own_postgres.start()
        back = time.monotonic()
        accepted: list = []

        def submitted() -> bool:
            try:
                accepted.extend(client.submit([cpu_spec(1)]))
                return True
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                return False

        until(submitted, 10, "a submission accepted after PostgreSQL is back")
        resumed = time.monotonic() - back
        until(lambda: _health(client.channel) == SERVING, 10, "health SERVING again")
        # the loop lost its lease with the database and took it again: it places again
        until(lambda: client.get(accepted[0].id).state == PLACED, 15, "placed after the outage")
        assert valley.loop is not None
        print(f"\nsubmissions accepted again {resumed:.2f} s after PostgreSQL was back")
