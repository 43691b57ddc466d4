"""Every Prometheus metric of Valley, defined once, and the HTTP server that exports them.

Three sources feed the metrics:

- the gRPC server, through ``grpc_interceptor()`` (the ``grpc_server_*`` families, named and
  labelled as the Go ecosystem's go-grpc-prometheus names them, so existing dashboards work);
- the scheduling loop, through a ``MetricsObserver`` (counters and histograms of submissions,
  placements, cycles and solver results);
- a snapshot of the store and cluster read at scrape time, through
  ``register_snapshot_source()`` (gauges: workloads by state, capacity, power, cost, carbon).

Naming: prefix ``valley_``, base units (seconds, bytes, watts), ``_total`` counters. Money and
carbon keep the units of the API's ``Cost`` message (CNY per hour, kg per hour, per kWh) so an
operator can compare a dashboard with ``valley sites`` digit for digit. No label carries a
workload id, tenant or other unbounded value: sites come from the scenario, reasons from the
solver's fixed vocabulary, kinds and states from enums.

All metrics live in one registry (``REGISTRY``) created at import, so several servers in one
process (tests) share them: creating interceptors and observers is free and idempotent, and
``register_snapshot_source`` replaces the previous source.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client import start_http_server as _prometheus_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler import __version__
from scheduler.domain import (
    GPU_MILLIS,
    ReasonCode,
    Workload,
    WorkloadKind,
    WorkloadState,
    primary_reason_code,
    site_costs,
)
from scheduler.domain.energy import SiteRates

if TYPE_CHECKING:
    import grpc

    from scheduler.loop import CycleReport, Snapshot

__all__ = [
    "REGISTRY",
    "MetricsObserver",
    "grpc_interceptor",
    "register_snapshot_source",
    "start_http_server",
    "stop_http_server",
    "stop_http_servers",
    "unregister_snapshot_source",
]

log = logging.getLogger(__name__)

# ``foo_created`` series double the size of a scrape and no dashboard uses them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# The reason label's values: every ReasonCode and ``other`` for anything else (a code stored by
# an older version, say). Series by reason exist for every value, zero included, so that graphs
# and alerts see a series before the first failure.
REASON_CODES = tuple(c.value for c in ReasonCode)
REASON_LABELS = (*REASON_CODES, "other")
_KNOWN_CODES = frozenset(REASON_CODES)
STATE_LABELS = {s: s.name.lower() for s in WorkloadState if s is not WorkloadState.UNSPECIFIED}
KIND_LABELS = {k: k.name.lower() for k in WorkloadKind}
SOLVE_STATUSES = ("optimal", "feasible", "fallback", "heuristic", "empty")
# what the solvers inside one solve said (SolveStats.backend_statuses): CP-SAT's statuses and
# those of the linear solvers (the LP bound and the MIP bound); anything else is "other"
SOLVER_BACKENDS = ("lp", "mip", "cpsat")
BACKEND_STATUSES = (
    "OPTIMAL",
    "FEASIBLE",
    "INFEASIBLE",
    "UNBOUNDED",
    "ABNORMAL",
    "MODEL_INVALID",
    "NOT_SOLVED",
    "UNKNOWN",
)

# ----------------------------------------------------------------------------- gRPC server

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# the Go library's default buckets, which its dashboards assume
GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "Total number of RPCs started on the server.",
    GRPC_LABELS,
    registry=REGISTRY,
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    (*GRPC_LABELS, "grpc_code"),
    registry=REGISTRY,
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level handled "
    "by the server.",
    GRPC_LABELS,
    buckets=GRPC_BUCKETS,
    registry=REGISTRY,
)
GRPC_MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total",
    "Total number of RPC stream messages received on the server.",
    GRPC_LABELS,
    registry=REGISTRY,
)
GRPC_MSG_SENT = Counter(
    "grpc_server_msg_sent_total",
    "Total number of gRPC stream messages sent by the server.",
    GRPC_LABELS,
    registry=REGISTRY,
)


def grpc_interceptor() -> grpc.ServerInterceptor:
    """A server interceptor that counts and times every RPC into the ``grpc_server_*`` metrics.

    Handles unary and streaming handlers and status codes set by ``context.abort``,
    ``context.set_code`` or a raised exception (``Unknown``)."""
    from scheduler.service.interceptors import GrpcMetrics, MetricsInterceptor

    return MetricsInterceptor(
        GrpcMetrics(
            started=GRPC_STARTED,
            handled=GRPC_HANDLED,
            handling_seconds=GRPC_HANDLING_SECONDS,
            msg_received=GRPC_MSG_RECEIVED,
            msg_sent=GRPC_MSG_SENT,
        )
    )


# ----------------------------------------------------------------------------- build

BUILD_INFO = Info("valley_build", "Version of the running Valley server.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

# ----------------------------------------------------------------------------- loop

SCHEDULING_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
GAP_BUCKETS = (0.0, 0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02)

WORKLOADS_SUBMITTED = Counter(
    "valley_workloads_submitted_total",
    "Workloads accepted by SubmitWorkloads, by kind.",
    ("kind",),
    registry=REGISTRY,
)
WORKLOADS_PLACED = Counter(
    "valley_workloads_placed_total",
    "Workloads that became PLACED, by kind.",
    ("kind",),
    registry=REGISTRY,
)
REPLICAS_PLACED = Counter(
    "valley_replicas_placed_total",
    "Replicas placed, by site.",
    ("site",),
    registry=REGISTRY,
)
WORKLOADS_UNSCHEDULABLE = Counter(
    "valley_workloads_unschedulable_total",
    "Workloads that became UNSCHEDULABLE (they can never fit as specified), by reason code.",
    ("reason",),
    registry=REGISTRY,
)
WORKLOADS_CANCELLED = Counter(
    "valley_workloads_cancelled_total",
    "Workloads cancelled by their tenant.",
    registry=REGISTRY,
)
WORKLOADS_COMPLETED = Counter(
    "valley_workloads_completed_total",
    "Workloads that completed (their duration_s elapsed).",
    registry=REGISTRY,
)
WORKLOADS_PREEMPTED = Counter(
    "valley_workloads_preempted_total",
    "Workloads preempted by the scheduler to make room for higher-priority work.",
    registry=REGISTRY,
)
PREEMPTIONS = Counter(
    "valley_preemptions_total",
    "Workloads displaced by preemption, by the site they ran in, the preemptor's priority and "
    "their own (priorities above 9 count as 10+, below 0 as negative).",
    ("site", "priority", "victim_priority"),
    registry=REGISTRY,
)
REPLICAS_MOVED = Counter(
    "valley_replicas_moved_total",
    "Running replicas moved to another node (drains and rebalances), by the site moved to.",
    ["site"],
    registry=REGISTRY,
)
SUBMIT_TO_PLACED_SECONDS = Histogram(
    "valley_submit_to_placed_seconds",
    "Time from a workload's creation to its placement, by kind.",
    ("kind",),
    buckets=SCHEDULING_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PLACED_REPLICA_RTT_SECONDS = Histogram(
    "valley_placed_replica_rtt_seconds",
    "Round-trip time from a placed replica's origin to its site, by site.",
    ("site",),
    buckets=RTT_BUCKETS,
    registry=REGISTRY,
)
CYCLES = Counter(
    "valley_cycles_total",
    "Scheduling cycles that solved a batch, by solver status.",
    ("status",),
    registry=REGISTRY,
)
LEADER = Gauge(
    "valley_leader",
    "1 while this server leads (runs the scheduling loop), 0 while another one does.",
    registry=REGISTRY,
)
LEADER_CHANGES = Counter(
    "valley_leader_changes_total",
    "Times this server took or lost the leadership.",
    registry=REGISTRY,
)


def leadership_changed(leading: bool) -> None:
    """Record that this server took (``leading``) or lost the leadership."""
    LEADER.set(1 if leading else 0)
    LEADER_CHANGES.inc()


SOLVER_FALLBACKS = Counter(
    "valley_solver_fallbacks_total",
    "Cycles in which the solver found nothing in time and the greedy answer was used.",
    registry=REGISTRY,
)
SOLVER_BACKEND_RUNS = Counter(
    "valley_solver_backend_runs_total",
    "Runs of the solvers inside Valley's solve, by backend (lp, mip, cpsat) and the status it "
    "ended with: anything but OPTIMAL or FEASIBLE (NOT_SOLVED and UNKNOWN: out of time) is "
    "also logged.",
    ("backend", "status"),
    registry=REGISTRY,
)
CYCLE_SECONDS = Histogram(
    "valley_cycle_duration_seconds",
    "Wall time of one scheduling cycle: build, solve and commit.",
    buckets=CYCLE_BUCKETS,
    registry=REGISTRY,
)
SOLVE_SECONDS = Histogram(
    "valley_solve_duration_seconds",
    "Wall time of the solver within one scheduling cycle.",
    buckets=CYCLE_BUCKETS,
    registry=REGISTRY,
)
BATCH_WORKLOADS = Histogram(
    "valley_cycle_batch_workloads",
    "Workloads in the batch of one scheduling cycle.",
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
BATCH_REPLICAS = Histogram(
    "valley_cycle_batch_replicas",
    "Replicas in the batch of one scheduling cycle.",
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
CYCLE_GAP = Histogram(
    "valley_cycle_gap_ratio",
    "Optimality gap (objective - bound) / objective of cycles whose solver proved a bound.",
    buckets=GAP_BUCKETS,
    registry=REGISTRY,
)
LAST_OBJECTIVE = Gauge(
    "valley_last_cycle_objective_cny_per_hour",
    "Objective of the last cycle's placement (energy + carbon + latency + headroom + unplaced "
    "penalty), CNY per hour.",
    registry=REGISTRY,
)
LAST_BOUND = Gauge(
    "valley_last_cycle_bound_cny_per_hour",
    "Proven lower bound on the last cycle's objective, CNY per hour (NaN when none).",
    registry=REGISTRY,
)
LAST_GAP = Gauge(
    "valley_last_cycle_gap_ratio",
    "Optimality gap of the last cycle, (objective - bound) / objective (NaN when no bound).",
    registry=REGISTRY,
)
LAST_CYCLE_TIME = Gauge(
    "valley_last_cycle_timestamp_seconds",
    "Unix time at which the last scheduling cycle started.",
    registry=REGISTRY,
)
# Exported by the snapshot collector itself (below), so a failure shows in the same scrape.
SNAPSHOT_ERRORS = Counter(
    "valley_snapshot_errors_total",
    "Scrapes in which reading the state snapshot failed (the snapshot gauges are missing then).",
    registry=None,
)

# Series that exist from the start, so rates and alerts have a zero to compare with.
for _kind in KIND_LABELS.values():
    WORKLOADS_SUBMITTED.labels(_kind)
    WORKLOADS_PLACED.labels(_kind)
    SUBMIT_TO_PLACED_SECONDS.labels(_kind)
for _code in REASON_LABELS:
    WORKLOADS_UNSCHEDULABLE.labels(_code)
for _status in SOLVE_STATUSES:
    CYCLES.labels(_status)
for _backend in SOLVER_BACKENDS:
    SOLVER_BACKEND_RUNS.labels(_backend, "OPTIMAL")
LAST_BOUND.set(math.nan)
LAST_GAP.set(math.nan)


def _count_placed(placed: Sequence[Workload]) -> None:
    """Placed workloads and replicas, the wait to placement and the replicas' RTT."""
    replicas_by_site: dict[str, int] = {}
    for w in placed:
        kind = KIND_LABELS.get(w.spec.kind, "unspecified")
        WORKLOADS_PLACED.labels(kind).inc()
        if w.created_at is not None and w.placed_at is not None:
            waited = (w.placed_at - w.created_at).total_seconds()
            SUBMIT_TO_PLACED_SECONDS.labels(kind).observe(max(0.0, waited))
        for p in w.placements:
            replicas_by_site[p.site] = replicas_by_site.get(p.site, 0) + 1
            if w.spec.origin:
                PLACED_REPLICA_RTT_SECONDS.labels(p.site).observe(p.latency_ms / 1000.0)
    for site, n in replicas_by_site.items():
        REPLICAS_PLACED.labels(site).inc(n)


def priority_label(priority: int) -> str:
    """A priority as a bounded label value: 0..9 as themselves, then ``10+`` and ``negative``."""
    if priority < 0:
        return "negative"
    return str(priority) if priority < 10 else "10+"


def reason_label(code: str) -> str:
    """A reason code as a label value: a ``ReasonCode``'s value, or ``other``."""
    return code if code in _KNOWN_CODES else "other"


def _reason_code(workload: Workload, report: CycleReport) -> str:
    unplaced = report.result.unplaced.get(workload.id)
    if unplaced is not None and unplaced.reasons:
        # the code the loop records for a final verdict
        return primary_reason_code(unplaced.reasons, final=True).value
    # "slo: RTT 4.0 ms > ..." style reasons
    return reason_label(workload.reason.split(":", 1)[0].strip())


class MetricsObserver:
    """A ``LoopObserver`` that turns the loop's events into counters and histograms."""

    def on_submitted(self, workloads: Sequence[Workload]) -> None:
        by_kind: dict[str, int] = {}
        for w in workloads:
            kind = KIND_LABELS.get(w.spec.kind, "unspecified")
            by_kind[kind] = by_kind.get(kind, 0) + 1
        for kind, n in by_kind.items():
            WORKLOADS_SUBMITTED.labels(kind).inc(n)

    def on_cycle(self, report: CycleReport) -> None:
        result = report.result
        status = result.status.value
        CYCLES.labels(status).inc()
        if status == "fallback":
            SOLVER_FALLBACKS.inc()
        for backend, backend_status in result.stats.backend_statuses():
            if backend in SOLVER_BACKENDS:
                label = backend_status if backend_status in BACKEND_STATUSES else "other"
                SOLVER_BACKEND_RUNS.labels(backend, label).inc()
        CYCLE_SECONDS.observe(max(0.0, report.cycle_seconds))
        SOLVE_SECONDS.observe(max(0.0, report.solve_seconds))
        BATCH_WORKLOADS.observe(report.batch_workloads)
        BATCH_REPLICAS.observe(report.batch_replicas)
        LAST_CYCLE_TIME.set(report.started_at.timestamp())
        LAST_OBJECTIVE.set(result.objective)
        gap = result.gap
        LAST_BOUND.set(math.nan if result.bound is None else result.bound)
        LAST_GAP.set(math.nan if gap is None else gap)
        if gap is not None and math.isfinite(gap):
            CYCLE_GAP.observe(gap)
        _count_placed(report.placed)
        for w in report.unschedulable:
            WORKLOADS_UNSCHEDULABLE.labels(_reason_code(w, report)).inc()

    def on_state_change(self, workload: Workload, old: WorkloadState) -> None:
        new = workload.state
        if new == old:
            return  # e.g. cancelling a CANCELLED workload returns it unchanged
        if new == WorkloadState.CANCELLED:
            WORKLOADS_CANCELLED.inc()
        elif new == WorkloadState.COMPLETED:
            WORKLOADS_COMPLETED.inc()
        elif new == WorkloadState.PREEMPTED:
            WORKLOADS_PREEMPTED.inc()

    def on_preempted(self, preemptor: Workload, victims: Sequence[Workload], at: datetime) -> None:
        _count_placed((preemptor,))
        priority = priority_label(preemptor.spec.priority)
        for v in victims:
            site = v.placements[0].site if v.placements else ""
            PREEMPTIONS.labels(site, priority, priority_label(v.spec.priority)).inc()

    def on_moved(self, before: Workload, after: Workload, at: datetime) -> None:
        was = {p.replica: p.node for p in before.placements}
        for p in after.placements:
            if was.get(p.replica) != p.node:
                REPLICAS_MOVED.labels(p.site).inc()


# ----------------------------------------------------------------------------- snapshot

# resource label -> unit label
RESOURCES = {"cpu": "core", "memory": "byte", "gpu": "gpu"}


def _per_site(values: np.ndarray, node_site: np.ndarray, n_sites: int) -> list[float]:
    return [float(v) for v in np.bincount(node_site, weights=values, minlength=n_sites)]


def snapshot_families(snap: Snapshot) -> Iterable[Metric]:
    """The gauges of one snapshot: workloads by state and reason, and per site capacity,
    allocation, utilisation, power, cost and carbon."""
    by_state = GaugeMetricFamily(
        "valley_workloads", "Workloads in the store, by state.", labels=("state",)
    )
    for state, label in STATE_LABELS.items():
        by_state.add_metric((label,), float(snap.counts_by_state.get(state, 0)))
    yield by_state
    yield _by_reason(
        "valley_pending_workloads",
        "PENDING workloads that were tried and do not fit now, by reason code.",
        snap.pending_by_reason,
    )
    yield _by_reason(
        "valley_unschedulable_workloads",
        "UNSCHEDULABLE workloads in the store, by reason code.",
        snap.unschedulable_by_reason,
    )
    yield from _site_families(snap)
    yield _reserved_family(snap)


# hours ahead the reserved capacity gauge covers (its ``hours_ahead`` label: 0..23)
RESERVED_HOURS_AHEAD = 24


def _reserved_family(snap: Snapshot) -> GaugeMetricFamily:
    """Cores reserved by work placed to start later, per site and hour ahead (0: the current
    hour), i.e. the core-hours reserved in that hour: the planned load of the next day. (Named
    in cores: promtool wants time in seconds, and one hour's cores are its core-hours.)"""
    family = GaugeMetricFamily(
        "valley_reserved_cores",
        "Cores reserved by work placed to start later (core-hours of that hour), by site and "
        "hour ahead (0 = the current hour, up to 23).",
        labels=("site", "hours_ahead"),
    )
    reserved = snap.reserved_cores
    for si, site in enumerate(snap.scenario.site_names):
        for h in range(RESERVED_HOURS_AHEAD):
            value = 0.0
            if reserved is not None and si < reserved.shape[0] and h < reserved.shape[1]:
                value = float(reserved[si, h])
            family.add_metric((site, str(h)), value)
    return family


def _by_reason(name: str, help_text: str, counts: Mapping[str, int]) -> GaugeMetricFamily:
    merged: dict[str, float] = dict.fromkeys(REASON_LABELS, 0.0)
    for code, count in counts.items():
        label = reason_label(code)
        merged[label] = merged.get(label, 0.0) + float(count)
    family = GaugeMetricFamily(name, help_text, labels=("reason",))
    for label, value in merged.items():
        family.add_metric((label,), value)
    return family


def _site_families(snap: Snapshot) -> Iterable[Metric]:
    cluster = snap.cluster
    scenario = snap.scenario
    sites = [s.name for s in scenario.sites]
    n = len(sites)
    node_site = np.asarray(cluster.node_site, dtype=np.int64)
    capacity = {
        "cpu": _per_site(cluster.cap_cpu / 1000.0, node_site, n),
        "memory": _per_site(cluster.cap_mem * 1048576.0, node_site, n),
        "gpu": _per_site(cluster.n_gpus.astype(np.float64), node_site, n),
    }
    allocated = {
        "cpu": _per_site((cluster.cap_cpu - cluster.free_cpu) / 1000.0, node_site, n),
        "memory": _per_site((cluster.cap_mem - cluster.free_mem) * 1048576.0, node_site, n),
        "gpu": _per_site(cluster.gpu_used_millis() / float(GPU_MILLIS), node_site, n),
    }
    cap = GaugeMetricFamily(
        "valley_site_capacity",
        "Capacity of a site in one resource (cpu in cores, memory in bytes, gpu in GPUs).",
        labels=("site", "resource", "unit"),
    )
    alloc = GaugeMetricFamily(
        "valley_site_allocated",
        "Allocated amount of a resource at a site (cpu in cores, memory in bytes, gpu in GPUs, "
        "fractional shares summed).",
        labels=("site", "resource", "unit"),
    )
    util = GaugeMetricFamily(
        "valley_site_utilisation_ratio",
        "Allocated over capacity of a resource at a site (0..1).",
        labels=("site", "resource"),
    )
    for resource, unit in RESOURCES.items():
        for i, site in enumerate(sites):
            c, a = capacity[resource][i], allocated[resource][i]
            cap.add_metric((site, resource, unit), c)
            alloc.add_metric((site, resource, unit), a)
            util.add_metric((site, resource), a / c if c > 0 else 0.0)
    yield cap
    yield alloc
    yield util

    nodes = GaugeMetricFamily("valley_site_nodes", "Nodes of a site.", labels=("site",))
    awake = GaugeMetricFamily(
        "valley_site_nodes_powered_on",
        "Nodes of a site that hold any replica (empty nodes are powered down).",
        labels=("site",),
    )
    node_counts = np.bincount(node_site, minlength=n)
    awake_counts = np.bincount(node_site, weights=cluster.awake.astype(np.float64), minlength=n)
    for i, site in enumerate(sites):
        nodes.add_metric((site,), float(node_counts[i]))
        awake.add_metric((site,), float(awake_counts[i]))
    yield nodes
    yield awake

    costs = site_costs(cluster, snap.hour, snap.month)
    power = GaugeMetricFamily(
        "valley_site_power_watts",
        "Facility power of a site now (IT power of powered nodes x PUE), watts.",
        labels=("site",),
    )
    energy = GaugeMetricFamily(
        "valley_site_energy_cost_cny_per_hour",
        "Energy cost rate of a site's facility power at this hour's price, CNY per hour.",
        labels=("site",),
    )
    carbon = GaugeMetricFamily(
        "valley_site_carbon_kg_per_hour",
        "Carbon emission rate of a site's facility power at this hour's intensity, "
        "kg CO2 per hour.",
        labels=("site",),
    )
    price = GaugeMetricFamily(
        "valley_site_price_cny_per_kwh",
        "Electricity price at a site this hour, CNY per kWh.",
        labels=("site",),
    )
    intensity = GaugeMetricFamily(
        "valley_site_carbon_intensity_kg_per_kwh",
        "Grid carbon intensity at a site this hour, kg CO2 per kWh.",
        labels=("site",),
    )
    pue = GaugeMetricFamily(
        "valley_site_pue", "Power usage effectiveness of a site.", labels=("site",)
    )
    for s in scenario.sites:
        cost = costs[s.name]
        rates = SiteRates.of(s, snap.hour, snap.month)
        power.add_metric((s.name,), cost.power_watts)
        energy.add_metric((s.name,), cost.energy_cny_per_hour)
        carbon.add_metric((s.name,), cost.carbon_kg_per_hour)
        price.add_metric((s.name,), rates.price_cny_per_kwh)
        intensity.add_metric((s.name,), rates.carbon_kg_per_kwh)
        pue.add_metric((s.name,), s.pue)
    yield from (power, energy, carbon, price, intensity, pue)

    info = GaugeMetricFamily(
        "valley_scenario_info",
        "The scenario the server runs, and its local hour and month (energy figures apply to).",
        labels=("scenario",),
    )
    info.add_metric((scenario.name,), 1.0)
    yield info
    hour = GaugeMetricFamily(
        "valley_scenario_local_hour", "Local hour of the scenario's timezone (0..23)."
    )
    hour.add_metric((), float(snap.hour))
    yield hour


class _SnapshotCollector(Collector):
    """Reads the current snapshot source at every scrape. Registered once, at import."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: Callable[[], Snapshot] | None = None

    def set_source(self, source: Callable[[], Snapshot] | None) -> None:
        with self._lock:
            self._source = source

    def describe(self) -> Iterable[Metric]:
        # Registration must not call the source (there may be none yet).
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            source = self._source
        families: list[Metric] = []
        if source is not None:
            try:
                families = list(snapshot_families(source()))
            except Exception:
                log.exception("metrics: reading the state snapshot failed")
                SNAPSHOT_ERRORS.inc()
        return [*families, *SNAPSHOT_ERRORS.collect()]


_SNAPSHOTS = _SnapshotCollector()
REGISTRY.register(_SNAPSHOTS)


def register_snapshot_source(fn: Callable[[], Snapshot]) -> None:
    """Read ``fn()`` at every scrape and export its gauges. Replaces any earlier source, so a
    new server in the same process takes over from the last one."""
    _SNAPSHOTS.set_source(fn)


def unregister_snapshot_source(fn: Callable[[], Snapshot] | None = None) -> None:
    """Stop exporting snapshot gauges (only if ``fn`` is the current source, when given)."""
    with _SNAPSHOTS._lock:
        if fn is None or _SNAPSHOTS._source == fn:
            _SNAPSHOTS._source = None


# ----------------------------------------------------------------------------- HTTP

_servers: list[Any] = []
_servers_lock = threading.Lock()


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port). An empty host means every interface."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address must be HOST:PORT (got {address!r})")
    host = host.strip("[]") or "0.0.0.0"
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"metrics port must be 0..65535 (got {number})")
    return host, number


def start_http_server(address: str) -> int:
    """Serve ``/metrics`` on ``address`` ("host:port", port 0 picks a free one) from a daemon
    thread; returns the bound port. May be called several times (one server per call)."""
    host, port = parse_address(address)
    server, thread = _prometheus_http_server(port, addr=host, registry=REGISTRY)
    with _servers_lock:
        _servers.append((server, thread))
    return int(server.server_port)


def stop_http_server(port: int) -> None:
    """Shut down the metrics HTTP server ``start_http_server`` bound to ``port`` (if any)."""
    with _servers_lock:
        mine = [(s, t) for s, t in _servers if s.server_port == port]
        _servers[:] = [(s, t) for s, t in _servers if s.server_port != port]
    _shutdown(mine)


def stop_http_servers() -> None:
    """Shut down every metrics HTTP server this process started (for tests and shutdown)."""
    with _servers_lock:
        servers = list(_servers)
        _servers.clear()
    _shutdown(servers)


def _shutdown(servers: Sequence[tuple[Any, threading.Thread]]) -> None:
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
