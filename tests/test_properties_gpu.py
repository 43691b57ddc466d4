"""Valley on random clusters with several GPU node shapes per GPU model and GPU-heavy work:
the solver never raises on valid input, no repair fails, and the placement holds every hard
rule (the independent checker). Found: the GPU re-pack offered a group of shares from
several nodes, larger than any node, to the bin packing, which raised."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.bench.checker import check_result
from scheduler.domain import Cluster, Resources, Scenario, WorkloadSpec, parse_scenario
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
from tests.test_properties import PROPERTY_SETTINGS

SITE = """
[sites.{name}]
pue = 1.2
price_cny_per_kwh = [{price}]
carbon_kg_per_kwh = {{ day = {{ value = 0.5, hours = [{hours}] }} }}
latency_ms = {{ city = {rtt} }}
[[sites.{name}.pools]]
name = "cpu"
count = 2
cpu_millis = 16000
memory_mib = 65536
idle_watts = 100.0
max_watts = 300.0
"""
POOL = """
[[sites.{site}.pools]]
name = "gpu{i}"
count = {count}
cpu_millis = {cpu}
memory_mib = {mem}
gpus = {gpus}
gpu_model = "{model}"
idle_watts = 300.0
max_watts = 600.0
gpu_watts = 700.0
"""
SHAPES = [(8000, 61440, 1), (12000, 98304, 2), (16000, 131072, 4), (32000, 262144, 8)]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    hours = ", ".join(str(h) for h in range(24))
    text = 'name = "gpu-shapes"\norigins = ["city"]\n'
    for name, price, rtt in (("near", 1.0, 1.0), ("green", 0.5, 4.0)):
        text += SITE.format(name=name, price=", ".join([str(price)] * 24), hours=hours, rtt=rtt)
        for i in range(draw(st.integers(1, 3))):
            cpu, mem, gpus = draw(st.sampled_from(SHAPES))
            model = draw(st.sampled_from(["A800", "A800", "H800"]))
            count = draw(st.integers(1, 4))
            text += POOL.format(
                site=name, i=i, count=count, cpu=cpu, mem=mem, gpus=gpus, model=model
            )
    return parse_scenario(text, "gpu-shapes.toml")


@st.composite
def gpu_work(draw: st.DrawFn) -> WorkloadSpec:
    cpu = draw(st.integers(500, 12000))
    mem = draw(st.integers(1024, 90000))
    if draw(st.booleans()):
        r = Resources(cpu, mem, gpu_millis=draw(st.integers(50, 999)))
    else:
        r = Resources(cpu, mem, gpus=draw(st.integers(1, 4)))
    return WorkloadSpec(
        tenant="t",
        resources=r,
        replicas=draw(st.integers(1, 6)),
        origin="city",
        max_latency_ms=draw(st.sampled_from([0.0, 0.0, 2.0])),
        gpu_models=draw(st.sampled_from([(), (), ("A800",), ("H800",)])),
    )


@PROPERTY_SETTINGS
@given(scenario=scenarios(), specs=st.lists(gpu_work(), min_size=1, max_size=12))
def test_valley_places_gpu_work_on_mixed_node_shapes_without_error(scenario, specs):
    problem = Problem(
        scenario, Cluster(scenario), tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs))
    )
    params = SolverParams(time_limit_s=0.5)
    result = solve(problem, params, seed=1)
    assert result.stats.repairs_failed == ()
    assert check_result(problem, result, cpu_on_gpu_nodes=params.cpu_on_gpu_nodes) == []
    if result.bound is not None:
        assert result.bound <= result.objective + 1e-9 * max(1.0, abs(result.objective))
