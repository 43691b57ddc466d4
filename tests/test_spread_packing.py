"""Per-node limits in packing and its repairs where room is tight: the limit binds only where
a node would otherwise hold too many of a workload, and room made for a limited workload is
made on nodes it may still use."""

from __future__ import annotations

from collections import Counter

from scheduler.domain import Resources, WorkloadKind, WorkloadSpec, parse_scenario
from scheduler.solver import SolverParams, solve
from tests.test_solver import hourly, packed_on_one_pool, problem
from tests.test_solver_repairs import apply, holds_exactly_what_it_says, nodes_of, state_of

ONE_POOL = f"""
name = "one-pool"
origins = ["city"]

[sites.near]
pue = 1.5
price_cny_per_kwh = {hourly(1.0)}
carbon_kg_per_kwh = {hourly(0.6)}
latency_ms = {{ city = 1.0 }}
[[sites.near.pools]]
name = "cpu"
count = 2
cpu_millis = 4000
memory_mib = 8192
idle_watts = 100.0
max_watts = 300.0
"""


def test_a_full_pool_packs_a_limited_service_beside_batch_work_without_losing_a_slot():
    # two 4-core nodes, 8 cores asked: a 4 x 1-core service (at most 2 a node) and two 2-core
    # batch replicas. Only 2 + 1 on each node fits; packing the service's shape 4 on one node
    # and handing out 2 left 2 cores there that only the service could have used
    scenario = parse_scenario(ONE_POOL, "one-pool.toml")
    svc = WorkloadSpec(
        tenant="t", resources=Resources(1000, 1024), replicas=4, kind=WorkloadKind.SERVICE
    )
    batch = WorkloadSpec(
        tenant="t", resources=Resources(2000, 1024), replicas=2, kind=WorkloadKind.BATCH
    )
    placed = packed_on_one_pool(scenario, "near/cpu", 2, svc, batch)
    assert set(placed) == {"w0", "w1"}
    assert max(Counter(rp.node for rp in placed["w0"]).values()) == 2


FOUR_NODES = ONE_POOL.replace("count = 2", "count = 4")


def test_make_room_frees_nodes_a_limited_workload_may_still_use():
    # w (2 x 1 core, 2 GiB; at most 1 a node) fits cpu-0 but may put only one replica there;
    # cpu-1 and cpu-2 lack 0.6 cores, cpu-3 lacks memory. Room must come from y1 or y2 moving
    # to cpu-3, not from moving the small s replicas off cpu-0, which w can use once anyway
    scenario = parse_scenario(FOUR_NODES, "four-nodes.toml")
    batch = {"kind": WorkloadKind.BATCH}

    def job(cpu: int, mem: int) -> WorkloadSpec:
        return WorkloadSpec(tenant="t", resources=Resources(cpu, mem), **batch)  # type: ignore[arg-type]

    specs = {
        "z": job(2000, 5000),
        "s1": job(100, 100),
        "s2": job(100, 100),
        "s3": job(100, 100),
        "y1": job(3600, 1024),
        "y2": job(3600, 1024),
        "m": job(400, 7000),
        "w": WorkloadSpec(
            tenant="t",
            resources=Resources(1000, 2048),
            replicas=2,
            kind=WorkloadKind.SERVICE,
            max_replicas_per_node=1,
        ),
    }
    state = state_of(scenario, specs)
    for wid, node in (("z", 0), ("s1", 0), ("s2", 0), ("s3", 0), ("y1", 1), ("y2", 2), ("m", 3)):
        state.place_on(wid, [f"near/cpu-{node:04d}"])
    assert apply("make-room", state)
    assert "w" in state
    assert len(set(nodes_of(state, "w"))) == 2
    assert holds_exactly_what_it_says(state)


def test_the_bound_pays_for_every_node_a_limit_of_one_wakes(tiny):
    # three replicas at most one a node: three green nodes powered, and the bound knows it
    # (the limit's rows join the model once the LP's solution breaks them)
    svc = WorkloadSpec(
        tenant="t",
        resources=Resources(500, 256),
        replicas=3,
        kind=WorkloadKind.SERVICE,
        max_replicas_per_node=1,
        allowed_sites=("green",),
    )
    r = solve(problem(tiny, svc), SolverParams())
    assert len({rp.node for rp in r.placements["w0"]}) == 3
    assert r.gap is not None and r.gap < 0.01, (r.objective, r.bound)
