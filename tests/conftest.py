from __future__ import annotations

import pytest

from scheduler.domain import Scenario, load_scenario, parse_scenario

TINY = """
name = "tiny"
origins = ["city", "far"]

[sites.near]
pue = 1.5
price_cny_per_kwh = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
carbon_kg_per_kwh = { day = { value = 0.6, hours = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23] } }
latency_ms = { city = 1.0, far = 6.0 }
[[sites.near.pools]]
name = "cpu"
count = 2
cpu_millis = 4000
memory_mib = 8192
idle_watts = 100.0
max_watts = 300.0

[sites.green]
pue = 1.1
price_cny_per_kwh = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
    0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
carbon_kg_per_kwh = { day = { value = 0.3, hours = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23] } }
latency_ms = { city = 4.0, far = 1.0 }
[[sites.green.pools]]
name = "cpu"
count = 3
cpu_millis = 4000
memory_mib = 8192
idle_watts = 100.0
max_watts = 300.0
[[sites.green.pools]]
name = "gpu"
count = 1
cpu_millis = 8000
memory_mib = 65536
gpus = 2
gpu_model = "A800"
idle_watts = 300.0
max_watts = 600.0
gpu_watts = 700.0
"""


@pytest.fixture(scope="session")
def tiny() -> Scenario:
    """Two sites, small enough to check by hand: near (2 CPU nodes, 4 cores, dear) and green
    (3 CPU nodes and one 2-GPU node, cheap)."""
    return parse_scenario(TINY, "tiny.toml")


@pytest.fixture(scope="session")
def beijing_hebei() -> Scenario:
    return load_scenario()


@pytest.fixture(scope="session")
def roadef_kernel_compiled() -> None:
    """Compile (or load from numba's cache) the reassignment kernel before timed tests: a cold
    compile takes tens of seconds on a shared machine. The benchmark's own warm-up: every
    compiled phase of the search on the specification's example."""
    from scheduler.bench.roadef import warm_up

    warm_up()
