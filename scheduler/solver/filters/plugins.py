"""The eligibility rules as filter plugins, after the Kubernetes scheduler framework's Filter.

Each rule is a small object with a ``NAME``, the ``ReasonCode`` it gives when it rules a site
out, and the ``WorkloadSpec`` fields it ``READS``; ``FILTERS`` holds them in the order they run
and refuses a second filter of the same name. A filter judges one site at a time: it gets the
pools of the site that earlier filters left (``Candidates``), returns those it keeps and, when
it rules the site out, a ``Reason``. Rules about the site as a whole (residency, SLO) keep every
pool and only add a reason; rules about nodes (GPU model, node shape) narrow the pools, and a
site left with none stops there, so that it is told the first rule that emptied it rather than
every later one.

These rules read the spec and the scenario only, never what is allocated: their verdicts hold
for a whole cycle (and are cached across alike workloads on the strength of ``READS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from scheduler.domain import Pool, Reason, ReasonCode, Resources, Site, WorkloadSpec
from scheduler.solver.problem import SolverParams

SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(WorkloadSpec))
RESOURCE_NAMES = ("cpu_millis", "memory_mib", "gpus", "gpu_millis")


@dataclass(frozen=True, slots=True)
class Candidates:
    """One site as the next filter sees it: the pools still eligible (indices of ``all_pools``,
    the scenario's pools in cluster order) and the solver's parameters."""

    site: Site
    pools: tuple[int, ...]
    all_pools: Sequence[Pool]
    params: SolverParams


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one filter says about one site: the pools (indices of ``Cluster.pools``) still
    eligible, and the reason when it rules the site out."""

    pools: tuple[int, ...]
    reason: Reason | None = None


class Filter(Protocol):
    """A hard rule about where a workload may go."""

    NAME: ClassVar[str]
    CODE: ClassVar[ReasonCode]
    READS: ClassVar[frozenset[str]]  # WorkloadSpec fields the verdict depends on

    def check(self, spec: WorkloadSpec, c: Candidates) -> Verdict:
        """The verdict on ``c.site`` given its pools still eligible."""
        ...


class FilterRegistry:
    """Filters in the order they run; a name registered twice, or a field a spec does not
    have, is refused."""

    def __init__(self, filters: Iterable[Filter] = ()) -> None:
        self._filters: dict[str, Filter] = {}
        self.reads: frozenset[str] = frozenset()
        for f in filters:
            self.register(f)

    def register(self, f: Filter) -> Filter:
        """Add ``f`` after the filters registered so far."""
        if f.NAME in self._filters:
            raise ValueError(f"a filter named {f.NAME!r} is registered already")
        unknown = f.READS - SPEC_FIELDS
        if unknown:
            raise ValueError(f"filter {f.NAME!r} reads unknown spec fields {sorted(unknown)}")
        self._filters[f.NAME] = f
        self.reads |= f.READS
        return f

    def __iter__(self) -> Iterator[Filter]:
        return iter(self._filters.values())

    def __len__(self) -> int:
        return len(self._filters)

    def __getitem__(self, name: str) -> Filter:
        return self._filters[name]


class Residency:
    """The site must be one of ``allowed_sites`` (empty: any)."""

    NAME: ClassVar[str] = "residency"
    CODE: ClassVar[ReasonCode] = ReasonCode.RESIDENCY
    READS: ClassVar[frozenset[str]] = frozenset({"allowed_sites"})

    def check(self, spec: WorkloadSpec, c: Candidates) -> Verdict:
        site = c.site.name
        if not spec.allowed_sites or site in spec.allowed_sites:
            return Verdict(c.pools)
        message = f"site {site} is not in allowed_sites {list(spec.allowed_sites)}"
        return Verdict(c.pools, Reason(self.CODE, message, site))


class Slo:
    """The site's RTT from the workload's origin must be within ``max_latency_ms``."""

    NAME: ClassVar[str] = "slo"
    CODE: ClassVar[ReasonCode] = ReasonCode.SLO
    READS: ClassVar[frozenset[str]] = frozenset({"max_latency_ms", "origin"})

    def check(self, spec: WorkloadSpec, c: Candidates) -> Verdict:
        if spec.max_latency_ms <= 0 or not spec.origin:
            return Verdict(c.pools)
        rtt = c.site.latency_ms[spec.origin]
        if rtt <= spec.max_latency_ms:
            return Verdict(c.pools)
        message = f"RTT {rtt:.1f} ms from {spec.origin} > SLO {spec.max_latency_ms:.1f} ms"
        return Verdict(c.pools, Reason(self.CODE, message, c.site.name))


class GpuModel:
    """A GPU workload that names ``gpu_models`` goes to GPU nodes of one of them."""

    NAME: ClassVar[str] = "gpu_model"
    CODE: ClassVar[ReasonCode] = ReasonCode.GPU_MODEL
    READS: ClassVar[frozenset[str]] = frozenset({"resources", "gpu_models"})

    def check(self, spec: WorkloadSpec, c: Candidates) -> Verdict:
        if not (spec.resources.wants_gpu and spec.gpu_models):
            return Verdict(c.pools)
        pools = c.all_pools
        kept = tuple(
            p for p in c.pools if pools[p].node.gpus and pools[p].gpu_model in spec.gpu_models
        )
        if kept:
            return Verdict(kept)
        models = sorted({p.gpu_model for p in c.site.pools if p.gpu_model})
        message = f"no node with GPU model {list(spec.gpu_models)} (site has {models})"
        return Verdict((), Reason(self.CODE, message, c.site.name))


class NodeShape:
    """One replica must fit an empty node of a suitable kind: GPU work on GPU nodes, CPU work on
    CPU nodes (and on GPU nodes when ``SolverParams.cpu_on_gpu_nodes``)."""

    NAME: ClassVar[str] = "node_shape"
    CODE: ClassVar[ReasonCode] = ReasonCode.SIZE
    READS: ClassVar[frozenset[str]] = frozenset({"resources"})

    def check(self, spec: WorkloadSpec, c: Candidates) -> Verdict:
        r = spec.resources
        pools = c.all_pools
        if r.wants_gpu:
            suitable = [p for p in c.pools if pools[p].node.gpus]
        elif c.params.cpu_on_gpu_nodes:
            suitable = list(c.pools)
        else:
            suitable = [p for p in c.pools if not pools[p].node.gpus]
        site = c.site.name
        if not suitable:
            resource = "gpus" if r.wants_gpu else "cpu_millis"
            return Verdict((), Reason(self.CODE, "no node of a suitable kind", site, resource))
        kept: list[int] = []
        too_big: list[tuple[str, int, int]] = []
        for p in suitable:
            node = pools[p].node
            res = exceeded_resource(node, r)
            if res:
                too_big.append((res, amount(r, res), amount(node, res)))
            else:
                kept.append(p)
        if kept:
            return Verdict(tuple(kept))
        res, want, largest = max(too_big, key=lambda t: t[2])
        message = f"one replica needs {res} {want}, larger than every node ({largest})"
        return Verdict((), Reason(self.CODE, message, site, res, float(want), float(largest)))


def exceeded_resource(node: Resources, r: Resources) -> str:
    """The first resource in which one replica exceeds an empty node, or ''."""
    if r.cpu_millis > node.cpu_millis:
        return "cpu_millis"
    if r.memory_mib > node.memory_mib:
        return "memory_mib"
    if r.gpus > node.gpus:
        return "gpus"
    if r.gpu_millis and node.gpus == 0:
        return "gpu_millis"
    return ""


def amount(r: Resources, resource: str) -> int:
    """``r``'s amount of ``resource`` (one of ``RESOURCE_NAMES``)."""
    return int(getattr(r, resource))


# the order is the order of a site's reasons: rules about the site, then about its nodes
FILTERS = FilterRegistry((Residency(), Slo(), GpuModel(), NodeShape()))
