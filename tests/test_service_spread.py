"""``max_replicas_per_node`` and the SERVICE default over real gRPC on loopback (API.md,
"Availability"), on the tiny scenario (near: 2 CPU nodes; green: 3 CPU nodes and a GPU node)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.config import Valley
from scheduler.domain import Scenario
from tests.test_service_support import PLACED, UNSCHEDULABLE, Client, cpu_spec, serve, until


@pytest.fixture
def client(tiny: Scenario, tmp_path: Path) -> Iterator[Client]:
    running: tuple[Valley, Client]
    with serve(tiny, tmp_path) as running:
        yield running[1]


@pytest.fixture(scope="module")
def holding_nothing(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One server for the module's tests whose workloads never hold capacity (refused, or
    unschedulable: they can never be placed), each looking at its own workload only: starting
    a server per test costs its solver process's start-up."""
    running: tuple[Valley, Client]
    with serve(tiny, Path(tmp_path_factory.mktemp("spread"))) as running:
        yield running[1]


def settled(client: Client, wid: str, state: int) -> pb.Workload:
    until(lambda: client.get(wid).state == state, 30, f"{wid} in state {state}")
    return client.get(wid)


def nodes(w: pb.Workload) -> list[str]:
    return [p.node for p in w.placements]


def test_a_three_replica_service_lands_on_at_least_two_nodes(client: Client) -> None:
    # small replicas: one node would hold all three, the default spreads them
    (w,) = client.submit([cpu_spec(0.5, replicas=3, kind=pb.WORKLOAD_KIND_SERVICE)])
    got = settled(client, w.id, PLACED)
    assert len(got.placements) == 3
    assert len(set(nodes(got))) >= 2
    assert got.spec.max_replicas_per_node == 0  # the default is not written into the spec


def test_four_replicas_with_a_limit_of_one_land_on_four_nodes(client: Client) -> None:
    (w,) = client.submit(
        [cpu_spec(0.5, replicas=4, kind=pb.WORKLOAD_KIND_BATCH, max_replicas_per_node=1)]
    )
    got = settled(client, w.id, PLACED)
    assert got.spec.max_replicas_per_node == 1
    assert len(set(nodes(got))) == 4


def test_three_replicas_limited_to_one_a_node_in_a_site_of_two_nodes_are_unschedulable(
    holding_nothing: Client,
) -> None:
    spec = cpu_spec(0.5, replicas=3, max_replicas_per_node=1, allowed_sites=["near"])
    (w,) = holding_nothing.submit([spec])
    got = settled(holding_nothing, w.id, UNSCHEDULABLE)
    assert "max_replicas_per_node" in got.reason
    assert not got.placements


def test_batch_replicas_without_a_limit_may_share_a_node(client: Client) -> None:
    (w,) = client.submit([cpu_spec(0.5, replicas=3, kind=pb.WORKLOAD_KIND_BATCH)])
    got = settled(client, w.id, PLACED)
    assert len(set(nodes(got))) == 1  # packed: one powered node draws the least power


def test_a_negative_limit_is_invalid_argument_naming_the_field(holding_nothing: Client) -> None:
    with pytest.raises(grpc.RpcError) as e:
        holding_nothing.submit([cpu_spec(1), cpu_spec(1, replicas=2, max_replicas_per_node=-1)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workloads[1].max_replicas_per_node" in (e.value.details() or "")


def test_explain_names_spread_node_for_a_limit_that_can_never_be_met(
    holding_nothing: Client,
) -> None:
    spec = cpu_spec(0.5, replicas=3, max_replicas_per_node=1, allowed_sites=["near"])
    (w,) = holding_nothing.submit([spec])
    settled(holding_nothing, w.id, UNSCHEDULABLE)
    e = holding_nothing.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=w.id))
    verdicts = {v.site: v for v in e.sites}
    assert e.summary.startswith("unschedulable") and "max_replicas_per_node" in e.summary
    assert [r.code for r in verdicts["near"].reasons] == ["spread_node"]
    assert [r.code for r in verdicts["green"].reasons] == ["residency"]
