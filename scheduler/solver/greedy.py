"""One-workload-at-a-time placement on concrete nodes, shared by the peer policies and by the
optimizer's packing and fallback. A workload is placed whole (GANG and SPREAD held) or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from scheduler.domain import Cluster, ReplicaPlacement, Resources, Scenario, Topology, WorkloadSpec
from scheduler.solver.filters import Eligibility

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# scores candidate nodes (all of which fit the replica); lower is better
NodeScorer = Callable[[Cluster, IntArray, Resources], FloatArray]


class NodeIndex:
    """Node indices per pool of a cluster, cached, so candidate sets are cheap to build."""

    def __init__(self, cluster: Cluster) -> None:
        order = np.argsort(cluster.node_pool, kind="stable")
        bounds = np.searchsorted(cluster.node_pool[order], np.arange(len(cluster.pools) + 1))
        self.by_pool = [order[bounds[i] : bounds[i + 1]] for i in range(len(cluster.pools))]
        self._union = lru_cache(maxsize=4096)(self._make_union)

    def _make_union(self, pools: tuple[int, ...]) -> IntArray:
        if not pools:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate([self.by_pool[p] for p in pools]))

    def nodes(self, pools: tuple[int, ...]) -> IntArray:
        return self._union(tuple(sorted(pools)))


def placement(
    cluster: Cluster,
    scenario: Scenario,
    spec: WorkloadSpec,
    replica: int,
    node: int,
    gpus: tuple[int, ...],
) -> ReplicaPlacement:
    """Replica ``replica`` of ``spec`` on ``node`` (its GPUs ``gpus``), with its site's RTT."""
    site = cluster.site_of(node)
    rtt = scenario.site(site).latency_ms[spec.origin] if spec.origin else 0.0
    return ReplicaPlacement(replica, site, cluster.node_names[node], rtt, gpus)


def _best_node(cluster: Cluster, nodes: IntArray, r: Resources, scorer: NodeScorer) -> int:
    fit = nodes[cluster.fit_mask(r, nodes)]
    if not len(fit):
        return -1
    scores = scorer(cluster, fit, r)
    return int(fit[int(np.argmin(scores))])


def place_workload(
    cluster: Cluster,
    scenario: Scenario,
    index: NodeIndex,
    spec: WorkloadSpec,
    elig: Eligibility,
    scorer: NodeScorer,
    site_order: Sequence[str] | None = None,
) -> tuple[ReplicaPlacement, ...] | None:
    """Place every replica of ``spec`` on ``cluster`` (changing it) or nothing (leaving it as it
    was). ``site_order`` ranks sites when GANG or SPREAD must choose; default: the scenario's."""
    taken = place_slots(cluster, index, spec, elig, scorer, site_order)
    if taken is None:
        return None
    return tuple(
        placement(cluster, scenario, spec, i, node, gpus) for i, (node, gpus) in enumerate(taken)
    )


def place_slots(
    cluster: Cluster,
    index: NodeIndex,
    spec: WorkloadSpec,
    elig: Eligibility,
    scorer: NodeScorer,
    site_order: Sequence[str] | None = None,
) -> list[tuple[int, tuple[int, ...]]] | None:
    """``place_workload``, returning the (node, GPUs) of each replica. At most
    ``elig.per_node`` replicas go on one node."""
    sites = [s for s in (site_order or elig.sites) if elig.pools_by_site.get(s)]
    r = spec.resources
    n = spec.replica_count
    taken: list[tuple[int, tuple[int, ...]]] = []
    full: set[int] = set()  # nodes holding elig.per_node replicas already
    per_node: dict[int, int] = {}

    def rollback() -> None:
        for node, gpus in reversed(taken):
            cluster.release(node, r, gpus)
        taken.clear()
        full.clear()
        per_node.clear()

    def take(nodes: IntArray) -> bool:
        if full:
            nodes = nodes[~np.isin(nodes, np.fromiter(full, dtype=np.int64, count=len(full)))]
        node = _best_node(cluster, nodes, r, scorer)
        if node < 0:
            return False
        taken.append((node, cluster.allocate(node, r)))
        per_node[node] = per_node.get(node, 0) + 1
        if per_node[node] >= elig.per_node:
            full.add(node)
        return True

    if spec.topology == Topology.GANG:
        for s in sites:
            nodes = index.nodes(elig.pools_by_site[s])
            if all(take(nodes) for _ in range(n)):
                break
            rollback()
        else:
            return None
    else:
        all_nodes = index.nodes(tuple(p for s in sites for p in elig.pools_by_site[s]))
        first = 0
        if spec.topology == Topology.SPREAD:
            # one replica in each of min_sites sites first, then the rest anywhere
            used = 0
            for s in sites:
                if used == spec.min_sites:
                    break
                if take(index.nodes(elig.pools_by_site[s])):
                    used += 1
            if used < spec.min_sites:
                rollback()
                return None
            first = used
        for _ in range(first, n):
            if not take(all_nodes):
                rollback()
                return None
    return taken


# ----------------------------------------------------------------------------- scorers


def first_fit(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
    """The lowest node index wins (nodes are ordered by site, pool, number)."""
    return nodes.astype(np.float64)


def _remaining_share(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
    cpu = (cluster.free_cpu[nodes] - r.cpu_millis) / cluster.cap_cpu[nodes]
    mem = (cluster.free_mem[nodes] - r.memory_mib) / cluster.cap_mem[nodes]
    share = cpu + mem
    if r.wants_gpu:
        gpus = np.maximum(cluster.n_gpus[nodes], 1) * 1000
        gfree = np.where(cluster.gpu_free[nodes] > 0, cluster.gpu_free[nodes], 0).sum(axis=1)
        share = share + (gfree - r.gpu_demand_millis) / gpus
    return np.asarray(share, dtype=np.float64)


def best_fit(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
    """The node left with the least remaining resources (summed shares) wins."""
    return _remaining_share(cluster, nodes, r)


def least_allocated(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
    """kube-scheduler's LeastAllocated: the node left with the most free share wins."""
    return -_remaining_share(cluster, nodes, r)


def awake_first(inner: NodeScorer) -> NodeScorer:
    """``inner``, with powered nodes before powered-down ones (waking a node costs its idle
    power); ``inner`` scores are shares in [-4, 4], a step of 10 dominates them."""

    def score(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        awake = (cluster.replicas_on[nodes] > 0).astype(np.float64)
        return inner(cluster, nodes, r) - awake * 10.0

    return score


def site_ranked(
    site_order: Sequence[str], site_names: Sequence[str], inner: NodeScorer
) -> NodeScorer:
    """``inner`` within a site, sites in ``site_order`` (``site_names``: the cluster's sites,
    in its order); a rank step of 100 dominates every other score here."""
    rank = np.asarray([list(site_order).index(s) for s in site_names], dtype=np.float64)

    def score(cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        return rank[cluster.node_site[nodes]] * 100.0 + inner(cluster, nodes, r)

    return score
