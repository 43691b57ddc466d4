"""An independent checker of a placement: every hard rule recomputed from the scenario, the
workload specs and the placements alone.

It deliberately shares no code with the solver's filters or with ``Cluster.allocate``: node
capacities come from the scenario's pools, node names from ``Pool.node_name``, and usage is
summed here, per node and per physical GPU. A ``Cluster`` is read only as the baseline (work
already running before the cycle), never asked whether something fits.

Rules (the ``rule`` of a ``Violation``):

- ``unknown_workload``: a placement for a workload the problem does not have
- ``replicas``: a placed workload without exactly ``replica_count`` placements numbered 0..n-1
- ``unknown_node``: a node name the scenario does not have
- ``site``: ``ReplicaPlacement.site`` is not the site of its node
- ``latency``: ``ReplicaPlacement.latency_ms`` is not the RTT from the origin to the site
- ``slo``: RTT from the origin to the site above ``max_latency_ms``
- ``residency``: a site outside ``allowed_sites``
- ``gpu_model``: a GPU replica on a node whose GPU model is not in ``gpu_models``
- ``gpu_node_reserved``: a CPU-only replica on a GPU node although the policy keeps them for GPUs
- ``gpu_indices``: wrong number of GPU indices, duplicates, or indices the node does not have
- ``cpu`` / ``memory``: a node's CPU or memory over capacity
- ``gpu_share``: one physical GPU's shares sum above 1000 millis
- ``gpu_exclusive``: a GPU held whole by one replica and used by anything else
- ``gang``: a GANG workload in more than one site (``check_over_time``: or its replicas
  starting at different times)
- ``spread``: a SPREAD workload in fewer than ``min_sites`` distinct sites
- ``spread_node``: more of a workload's replicas on one node than ``max_replicas_per_node``,
  or, when the spec leaves it 0, than ``ceil(replicas / 2)`` for a SERVICE with 2 or more
  replicas (API.md, "Availability"; ``default_spread=False`` drops that default)
- ``accounting``: (``check_result`` only) a workload neither placed nor unplaced, or both

``check_over_time`` checks placements that hold their nodes over spans of time (a simulated
day): capacity at every instant, the other rules per replica.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    Pool,
    ReplicaPlacement,
    Scenario,
    Topology,
    WorkloadKind,
    WorkloadSpec,
)
from scheduler.solver import PlacementResult, Problem

# RTTs are configured numbers copied into placements: equal up to float noise
_LATENCY_TOLERANCE_MS = 1e-6


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which workload (or workloads, comma-separated, for a shared node),
    which rule, and a message with the numbers."""

    workload: str
    rule: str
    message: str
    node: str = ""
    replica: int | None = None

    def __str__(self) -> str:
        where = f" on {self.node}" if self.node else ""
        rep = f" replica {self.replica}" if self.replica is not None else ""
        return f"{self.workload}{rep}{where}: {self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    site: str
    pool: Pool


def _catalog(scenario: Scenario) -> dict[str, _Node]:
    nodes: dict[str, _Node] = {}
    for site in scenario.sites:
        for pool in site.pools:
            for k in range(pool.count):
                name = pool.node_name(k)
                nodes[name] = _Node(name, site.name, pool)
    return nodes


@dataclass
class _Usage:
    """What is allocated on one node: baseline plus this placement."""

    cpu: int = 0
    memory: int = 0
    # physical GPU index -> holders as (owner, millis, whole)
    gpus: dict[int, list[tuple[str, int, bool]]] = field(default_factory=dict)
    owners: set[str] = field(default_factory=set)

    def gpu(self, index: int) -> list[tuple[str, int, bool]]:
        return self.gpus.setdefault(index, [])


def _baseline(cluster: Cluster, nodes: Mapping[str, _Node]) -> dict[str, _Usage]:
    """Usage of work already running, read from the cluster's arrays."""
    usage: dict[str, _Usage] = {}
    for i, name in enumerate(cluster.node_names):
        if name not in nodes:
            continue
        cpu = int(cluster.cap_cpu[i] - cluster.free_cpu[i])
        mem = int(cluster.cap_mem[i] - cluster.free_mem[i])
        u = _Usage(cpu=cpu, memory=mem)
        for g in range(int(cluster.n_gpus[i])):
            used = GPU_MILLIS - int(cluster.gpu_free[i, g])
            if used > 0:
                u.gpu(g).append(("(running)", used, False))
        if cpu or mem or u.gpus:
            usage[name] = u
    return usage


def check_placements(
    scenario: Scenario,
    specs: Mapping[str, WorkloadSpec],
    placements: Mapping[str, Sequence[ReplicaPlacement]],
    *,
    baseline: Cluster | None = None,
    cpu_on_gpu_nodes: bool = True,
    default_spread: bool = True,
) -> list[Violation]:
    """Every violation of a hard rule by ``placements`` (workload id -> replica placements) of
    workloads ``specs`` on ``scenario``'s nodes, on top of ``baseline`` (running work) if given.
    ``cpu_on_gpu_nodes=False`` also flags CPU-only replicas on GPU nodes;
    ``default_spread=False`` checks only the per-node limits specs ask for."""
    nodes = _catalog(scenario)
    usage: dict[str, _Usage] = defaultdict(_Usage)
    if baseline is not None:
        usage.update(_baseline(baseline, nodes))
    out: list[Violation] = []
    for wid, reps in placements.items():
        spec = specs.get(wid)
        if spec is None:
            out.append(Violation(wid, "unknown_workload", "placed but not in the problem"))
            continue
        out.extend(_check_workload(scenario, nodes, usage, wid, spec, reps, cpu_on_gpu_nodes))
        out.extend(_check_per_node(wid, spec, reps, default_spread))
    out.extend(_check_capacity(nodes, usage))
    return out


def _check_workload(
    scenario: Scenario,
    nodes: Mapping[str, _Node],
    usage: dict[str, _Usage],
    wid: str,
    spec: WorkloadSpec,
    reps: Sequence[ReplicaPlacement],
    cpu_on_gpu_nodes: bool,
) -> list[Violation]:
    out: list[Violation] = []
    n = spec.replica_count
    numbers = sorted(rp.replica for rp in reps)
    if numbers != list(range(n)):
        out.append(
            Violation(
                wid,
                "replicas",
                f"{len(reps)} placements numbered {_abbrev(numbers)}, "
                f"expected {n} numbered 0..{n - 1}",
            )
        )
    r = spec.resources
    sites: set[str] = set()
    for rp in reps:
        node = nodes.get(rp.node)
        if node is None:
            out.append(
                Violation(
                    wid,
                    "unknown_node",
                    f"node {rp.node!r} is not in the scenario",
                    rp.node,
                    rp.replica,
                )
            )
            continue
        v = _replica_rules(scenario, node, wid, spec, rp, cpu_on_gpu_nodes)
        out.extend(v)
        sites.add(node.site)
        u = usage[node.name]
        u.cpu += r.cpu_millis
        u.memory += r.memory_mib
        u.owners.add(wid)
        out.extend(_take_gpus(node, u, wid, spec, rp))
    if reps and spec.topology == Topology.GANG and len(sites) > 1:
        out.append(
            Violation(
                wid, "gang", f"GANG placed in {len(sites)} sites {sorted(sites)}, must be one"
            )
        )
    if reps and spec.topology == Topology.SPREAD and len(sites) < spec.min_sites:
        out.append(
            Violation(
                wid,
                "spread",
                f"SPREAD placed in {len(sites)} distinct sites {sorted(sites)}, "
                f"needs min_sites {spec.min_sites}",
            )
        )
    return out


def _check_per_node(
    wid: str, spec: WorkloadSpec, reps: Sequence[ReplicaPlacement], default_spread: bool
) -> list[Violation]:
    # recomputed from API.md's words, not with the domain's helper: this checker is independent
    n = spec.replicas or 1
    limit = spec.max_replicas_per_node
    if limit <= 0:
        if not (default_spread and spec.kind == WorkloadKind.SERVICE and n >= 2):
            return []
        limit = -(-n // 2)
    return [
        Violation(
            wid,
            "spread_node",
            f"{k} replicas on one node, at most {limit} allowed "
            f"(max_replicas_per_node={spec.max_replicas_per_node}, kind {spec.kind.name})",
            node,
        )
        for node, k in sorted(Counter(rp.node for rp in reps).items())
        if k > limit
    ]


def _abbrev(numbers: Sequence[int]) -> str:
    return str(list(numbers[:10]))[:-1] + ", ...]" if len(numbers) > 10 else str(list(numbers))


def _replica_rules(
    scenario: Scenario,
    node: _Node,
    wid: str,
    spec: WorkloadSpec,
    rp: ReplicaPlacement,
    cpu_on_gpu_nodes: bool,
) -> list[Violation]:
    out: list[Violation] = []

    def fail(rule: str, message: str) -> None:
        out.append(Violation(wid, rule, message, node.name, rp.replica))

    if rp.site != node.site:
        fail("site", f"placement says site {rp.site!r} but node {node.name} is in {node.site!r}")
    site = scenario.site(node.site)
    if spec.origin:
        rtt = site.latency_ms.get(spec.origin)
        if rtt is None:
            fail("slo", f"origin {spec.origin!r} has no RTT to site {node.site}")
        else:
            if spec.max_latency_ms > 0 and rtt > spec.max_latency_ms:
                fail(
                    "slo",
                    f"RTT {rtt} ms from {spec.origin} to {node.site} "
                    f"> SLO {spec.max_latency_ms} ms",
                )
            if abs(rp.latency_ms - rtt) > _LATENCY_TOLERANCE_MS:
                fail(
                    "latency",
                    f"latency_ms {rp.latency_ms} but RTT {spec.origin}->{node.site} is {rtt}",
                )
    if spec.allowed_sites and node.site not in spec.allowed_sites:
        fail("residency", f"site {node.site} not in allowed_sites {list(spec.allowed_sites)}")
    r = spec.resources
    if r.wants_gpu and spec.gpu_models and node.pool.gpu_model not in spec.gpu_models:
        fail(
            "gpu_model",
            f"node GPU model {node.pool.gpu_model!r} not in gpu_models {list(spec.gpu_models)}",
        )
    if not r.wants_gpu and node.pool.node.gpus and not cpu_on_gpu_nodes:
        fail("gpu_node_reserved", f"CPU-only replica on GPU node ({node.pool.node.gpus} GPUs)")
    return out


def _take_gpus(
    node: _Node, u: _Usage, wid: str, spec: WorkloadSpec, rp: ReplicaPlacement
) -> list[Violation]:
    r = spec.resources
    n_gpus = node.pool.node.gpus
    idx = tuple(rp.gpu_indices)
    expected = r.gpus if r.gpus else (1 if r.gpu_millis else 0)

    def fail(message: str) -> list[Violation]:
        return [Violation(wid, "gpu_indices", message, node.name, rp.replica)]

    if len(idx) != expected:
        return fail(f"{len(idx)} GPU indices {list(idx)}, request needs {expected}")
    if len(set(idx)) != len(idx):
        return fail(f"duplicate GPU indices {list(idx)}")
    bad = [i for i in idx if not 0 <= i < n_gpus]
    if bad:
        return fail(f"GPU indices {bad} not on a node with {n_gpus} GPUs")
    whole = bool(r.gpus)
    share = GPU_MILLIS if whole else r.gpu_millis
    owner = f"{wid}#{rp.replica}"
    for i in idx:
        u.gpu(i).append((owner, share, whole))
    return []


def _check_capacity(nodes: Mapping[str, _Node], usage: Mapping[str, _Usage]) -> list[Violation]:
    out: list[Violation] = []
    for name, u in usage.items():
        node = nodes.get(name)
        if node is None:
            continue
        cap = node.pool.node
        who = ",".join(sorted(u.owners)) or "(running)"
        if u.cpu > cap.cpu_millis:
            out.append(
                Violation(
                    who, "cpu", f"{u.cpu} cpu_millis allocated > capacity {cap.cpu_millis}", name
                )
            )
        if u.memory > cap.memory_mib:
            out.append(
                Violation(
                    who,
                    "memory",
                    f"{u.memory} memory_mib allocated > capacity {cap.memory_mib}",
                    name,
                )
            )
        for g, holders in sorted(u.gpus.items()):
            total = sum(m for _, m, _ in holders)
            owners = ",".join(o for o, _, _ in holders)
            if any(w for _, _, w in holders) and len(holders) > 1:
                out.append(
                    Violation(
                        who,
                        "gpu_exclusive",
                        f"GPU {g} held whole but has {len(holders)} holders ({owners}), "
                        f"{total} millis",
                        name,
                    )
                )
            elif total > GPU_MILLIS:
                out.append(
                    Violation(
                        who,
                        "gpu_share",
                        f"GPU {g} shares sum to {total} millis > {GPU_MILLIS} ({owners})",
                        name,
                    )
                )
    return out


def check_result(
    problem: Problem,
    result: PlacementResult,
    *,
    cpu_on_gpu_nodes: bool = True,
    default_spread: bool = True,
) -> list[Violation]:
    """``check_placements`` on a solver result, plus the accounting: every workload of the
    problem is either placed or unplaced, never both, never neither."""
    specs = {w.id: w.spec for w in problem.workloads}
    out = check_placements(
        problem.scenario,
        specs,
        result.placements,
        baseline=problem.cluster,
        cpu_on_gpu_nodes=cpu_on_gpu_nodes,
        default_spread=default_spread,
    )
    for wid in specs:
        placed = wid in result.placements
        unplaced = wid in result.unplaced
        if placed and unplaced:
            out.append(Violation(wid, "accounting", "both placed and unplaced"))
        elif not placed and not unplaced:
            out.append(Violation(wid, "accounting", "neither placed nor unplaced"))
    for wid in result.unplaced:
        if wid not in specs:
            out.append(Violation(wid, "unknown_workload", "unplaced but not in the problem"))
    return out


def check_over_time(
    scenario: Scenario,
    specs: Mapping[str, WorkloadSpec],
    placements: Mapping[str, Sequence[ReplicaPlacement]],
    spans: Mapping[str, Sequence[tuple[float, float]]],
    *,
    cpu_on_gpu_nodes: bool = True,
) -> list[Violation]:
    """``check_placements`` for placements that hold their nodes for a while: replica i of
    workload w holds its node during ``spans[w][i]`` = [start, end) (any unit of time), and
    capacity (CPU and memory per node, shares and whole GPUs per physical GPU) is checked at
    every start against the replicas holding the node then (usage only grows at starts). Every
    other rule is checked once per replica. A capacity violation names the workload whose
    replica's start found the node or GPU over."""
    nodes = _catalog(scenario)
    out: list[Violation] = []
    held: list[tuple[str, float, float, str, ReplicaPlacement, WorkloadSpec]] = []
    for wid, reps in placements.items():
        spec = specs.get(wid)
        if spec is None:
            out.append(Violation(wid, "unknown_workload", "placed but not in the problem"))
            continue
        scratch: dict[str, _Usage] = defaultdict(_Usage)  # capacity is checked over time below
        out.extend(_check_workload(scenario, nodes, scratch, wid, spec, reps, cpu_on_gpu_nodes))
        starts = {t0 for t0, t1 in spans[wid] if t1 > t0}
        if spec.topology == Topology.GANG and len(starts) > 1:
            out.append(Violation(wid, "gang", f"replicas start at {len(starts)} different times"))
        for rp, (t0, t1) in zip(reps, spans[wid], strict=True):
            if rp.node in nodes and t1 > t0:
                held.append((rp.node, t0, t1, wid, rp, spec))
    return out + _capacity_over_time(nodes, held)


def _sweep(
    key: np.ndarray, t0: np.ndarray, t1: np.ndarray, amounts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, level): for each interval [t0, t1) that starts, the sum of ``amounts`` (one row per
    interval) over the intervals of the same key holding at that instant, in time order and
    ends before starts at one instant (spans are half-open)."""
    n = len(key)
    keys = np.concatenate([key, key])
    times = np.concatenate([t0, t1])
    starts = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    delta = np.concatenate([amounts, -amounts])
    rows = np.concatenate([np.arange(n), np.arange(n)])
    order = np.lexsort((starts, times, keys))
    keys, starts, delta, rows = keys[order], starts[order], delta[order], rows[order]
    total = np.cumsum(delta, axis=0)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    before = (total - delta)[first]  # the running sum before each key's first event
    level = total - before[np.cumsum(first) - 1]
    at_start = starts == 1
    return rows[at_start], level[at_start]


def _capacity_over_time(
    nodes: Mapping[str, _Node],
    held: Sequence[tuple[str, float, float, str, ReplicaPlacement, WorkloadSpec]],
) -> list[Violation]:
    if not held:
        return []
    names = list(nodes)
    index = {name: i for i, name in enumerate(names)}
    out: list[Violation] = []
    node = np.asarray([index[h[0]] for h in held], dtype=np.int64)
    t0 = np.asarray([h[1] for h in held], dtype=float)
    t1 = np.asarray([h[2] for h in held], dtype=float)
    use = np.asarray(
        [(h[5].resources.cpu_millis, h[5].resources.memory_mib) for h in held], dtype=np.int64
    )
    cap = np.asarray(
        [(nodes[n].pool.node.cpu_millis, nodes[n].pool.node.memory_mib) for n in names],
        dtype=np.int64,
    )
    rows, level = _sweep(node, t0, t1, use)
    for col, rule, unit in ((0, "cpu", "cpu_millis"), (1, "memory", "memory_mib")):
        for k in np.flatnonzero(level[:, col] > cap[node[rows], col]):
            h = held[rows[k]]
            limit = cap[node[rows[k]], col]
            message = f"{level[k, col]} {unit} allocated > capacity {limit}"
            out.append(Violation(h[3], rule, message, h[0], h[4].replica))
    # physical GPUs: (millis, whole holders, holders), one row per GPU a replica holds
    gpu_rows = []
    for i, (name, _, _, _, rp, spec) in enumerate(held):
        r = spec.resources
        idx = tuple(rp.gpu_indices)
        expected = r.gpus if r.gpus else (1 if r.gpu_millis else 0)
        n_gpus = nodes[name].pool.node.gpus
        if (
            len(idx) != expected
            or len(set(idx)) != len(idx)
            or any(not 0 <= g < n_gpus for g in idx)
        ):
            continue  # reported by the replica's own rules
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        gpu_rows += [(i, g, share, int(bool(r.gpus))) for g in idx]
    if not gpu_rows:
        return out
    g = np.asarray(gpu_rows, dtype=np.int64)
    width = max(n.pool.node.gpus for n in nodes.values()) + 1
    of = g[:, 0]
    amounts = np.stack([g[:, 2], g[:, 3], np.ones(len(g), dtype=np.int64)], axis=1)
    rows, level = _sweep(node[of] * width + g[:, 1], t0[of], t1[of], amounts)
    for k in np.flatnonzero((level[:, 0] > GPU_MILLIS) | ((level[:, 1] > 0) & (level[:, 2] > 1))):
        h = held[of[rows[k]]]
        gpu = g[rows[k], 1]
        millis, whole, count = level[k]
        if whole and count > 1:
            rule, message = "gpu_exclusive", f"GPU {gpu} held whole but has {count} holders"
        else:
            rule, message = "gpu_share", f"GPU {gpu} shares sum to {millis} millis > {GPU_MILLIS}"
        out.append(Violation(h[3], rule, f"{message}, {millis} millis", h[0], h[4].replica))
    return out


def count_by_rule(violations: Sequence[Violation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in violations:
        counts[v.rule] = counts.get(v.rule, 0) + 1
    return counts
