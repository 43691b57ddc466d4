"""What the client commands print for people: aligned tables and one workload in detail.

Widths are terminal columns, not characters: a Chinese tenant name such as 中关村金融 is five
characters but ten columns wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from wcwidth import wcswidth, wcwidth

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain.workload import per_node_limit


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal (wide East Asian characters take two)."""
    width = wcswidth(text)
    if width >= 0:
        return width
    # a control character somewhere: wcswidth gives up; count such a character as one column
    return sum(w if (w := wcwidth(c)) >= 0 else 1 for c in text)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """``rows`` under ``header``, columns aligned on screen; an empty cell shows as ``-``."""
    cells = [[str(c) for c in header]] + [
        ["-" if c is None or c == "" else str(c) for c in r] for r in rows
    ]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c + " " * (w - display_width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def clip(text: str, columns: int) -> str:
    """``text`` cut to ``columns`` terminal columns, ``...`` marking the cut."""
    if display_width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        used += display_width(c)
        if used > columns - 3:
            break
        out.append(c)
    return "".join(out) + "..."


def state_name(value: int) -> str:
    """``PLACED`` for ``WORKLOAD_STATE_PLACED``."""
    return pb.WorkloadState.Name(value).removeprefix("WORKLOAD_STATE_")


def cores(millis: int) -> str:
    return f"{millis / 1000:g}"


def sites_of(w: pb.Workload) -> str:
    """Where a workload's replicas are: ``etown x2, zhangbei x1``."""
    sites: dict[str, int] = {}
    for p in w.placements:
        sites[p.site] = sites.get(p.site, 0) + 1
    return ", ".join(f"{s} x{n}" for s, n in sites.items())


def shape(r: pb.Resources) -> str:
    parts = [f"{cores(r.cpu_millis)} cpu", f"{r.memory_mib} MiB"]
    if r.gpus:
        parts.append(f"{r.gpus} gpu")
    if r.gpu_millis:
        parts.append(f"{r.gpu_millis}m gpu")
    return " ".join(parts)


def timestamp(ts: Any) -> str:
    """A protobuf Timestamp in UTC to the millisecond; ``-`` when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    t = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def workload_rows(workloads: Sequence[pb.Workload]) -> str:
    """One line per workload."""
    rows = [
        (
            w.id,
            w.spec.tenant,
            w.spec.name,
            state_name(w.state),
            w.spec.replicas or 1,
            shape(w.spec.resources),
            sites_of(w),
            clip(w.reason, 70),
        )
        for w in workloads
    ]
    return table(
        rows, ("ID", "TENANT", "NAME", "STATE", "REPLICAS", "PER REPLICA", "SITES", "REASON")
    )


def planned_start(w: pb.Workload) -> str:
    """When a planned workload would start: ``now``, the reserved start of deferrable work
    placed to start later, or empty where it would not be placed."""
    if w.state != pb.WORKLOAD_STATE_PLACED:
        return ""
    later = [p.start_time for p in w.placements if p.HasField("start_time")]
    return timestamp(min(later, key=lambda t: (t.seconds, t.nanos))) if later else "now"


def planned_rows(workloads: Sequence[pb.Workload]) -> str:
    """A dry run's line per workload (no ids: nothing was stored)."""
    rows = [
        (
            w.spec.tenant,
            w.spec.name,
            state_name(w.state),
            w.spec.replicas or 1,
            shape(w.spec.resources),
            sites_of(w),
            planned_start(w),
            clip(w.reason, 70),
        )
        for w in workloads
    ]
    return table(
        rows, ("TENANT", "NAME", "STATE", "REPLICAS", "PER REPLICA", "SITES", "STARTS", "REASON")
    )


def workload_detail(w: pb.Workload) -> str:
    """One workload: state, reason, times, cost and a line per placed replica."""
    s = w.spec
    lines = [
        f"id:          {w.id}",
        f"tenant:      {s.tenant}",
        f"name:        {s.name}",
        f"state:       {state_name(w.state)}",
    ]
    if w.reason:
        lines.append(f"reason:      {w.reason}")
    lines += [
        f"replicas:    {s.replicas or 1} x {shape(s.resources)}",
        f"created:     {timestamp(w.created_at)}",
        f"placed:      {timestamp(w.placed_at)}",
    ]
    start = w.placements[0].start_time if w.placements else None
    if start is not None and (start.seconds, start.nanos) != (
        w.placed_at.seconds,
        w.placed_at.nanos,
    ):
        # placed to start later (time shifting): when it starts, and ends
        lines.append(f"starts:      {timestamp(start)}")
    if s.HasField("deadline"):
        lines.append(f"deadline:    {timestamp(s.deadline)}")
    limit = per_node_limit(s.replicas, s.kind, s.max_replicas_per_node)
    if limit < (s.replicas or 1):
        own = "" if s.max_replicas_per_node else " (the SERVICE default)"
        nodes = len({p.node for p in w.placements})
        on = f", on {nodes} nodes" if w.placements else ""
        lines.append(f"per node:    at most {limit}{own}{on}")
    if s.origin:
        slo = f", SLO {s.max_latency_ms:g} ms" if s.max_latency_ms else ""
        lines.append(f"origin:      {s.origin}{slo}")
    if w.placements:
        lines.append(
            f"cost:        {w.cost.energy_cny_per_hour:.4f} CNY/h, "
            f"{w.cost.carbon_kg_per_hour:.4f} kg CO2/h, {w.cost.power_watts:.1f} W"
        )
        lines.append("")
        rows = [
            (
                p.replica,
                p.site,
                p.node,
                ",".join(str(g) for g in p.gpu_indices),
                f"{p.latency_ms:g}",
            )
            for p in w.placements
        ]
        lines.append(table(rows, ("REPLICA", "SITE", "NODE", "GPUS", "RTT MS")))
    return "\n".join(lines)


def explanation(workload_id: str, e: pb.Explanation) -> str:
    """The verdict per site: feasible or not, what it would cost, and why not."""
    rows = [
        (
            v.site,
            "yes" if v.feasible else "no",
            f"{v.cost.energy_cny_per_hour:.4f}" if v.cost.power_watts else "-",
            f"{v.cost.carbon_kg_per_hour:.4f}" if v.cost.power_watts else "-",
            "; ".join(f"{r.code}: {r.message}" for r in v.reasons),
        )
        for v in e.sites
    ]
    return "\n".join(
        [
            f"{workload_id}: {state_name(e.state)}",
            e.summary,
            "",
            table(rows, ("SITE", "FEASIBLE", "CNY/H", "KG CO2/H", "REASONS")),
        ]
    )


def site_tables(resp: pb.ListSitesResponse, nodes: bool) -> str:
    """A line per site (and with ``nodes`` a table of every node)."""
    rows = [
        (
            s.name,
            f"{s.pue:g}",
            f"{cores(s.allocated.cpu_millis)}/{cores(s.capacity.cpu_millis)}",
            f"{s.allocated.memory_mib // 1024}/{s.capacity.memory_mib // 1024}",
            f"{s.allocated.gpus}/{s.capacity.gpus}",
            f"{s.allocated.gpu_millis}/{s.capacity.gpu_millis}",
            f"{s.power_watts / 1000:.1f}",
            f"{s.price_cny_per_kwh:.4f}",
            f"{s.carbon_kg_per_kwh:.3f}",
            f"{s.energy_cny_per_hour:.2f}",
        )
        for s in resp.sites
    ]
    header = (
        "SITE",
        "PUE",
        "CORES",
        "MEMORY GIB",
        "GPUS",
        "GPU MILLIS",
        "POWER KW",
        "CNY/KWH",
        "KG CO2/KWH",
        "CNY/H",
    )
    out = [f"local time {resp.hour:02d}:00, month {resp.month}", table(rows, header)]
    if any(s.reserved_cores_by_hour for s in resp.sites):
        out += ["", reserved_table(resp)]
    if nodes:
        out += ["", node_table([n for s in resp.sites for n in s.nodes])]
    return "\n".join(out)


def node_table(nodes: Sequence[pb.Node]) -> str:
    """A line per node: pool, allocation over capacity, and whether it is cordoned."""
    rows = [
        (
            n.name,
            n.pool,
            n.rack,
            n.gpu_model,
            f"{cores(n.allocated.cpu_millis)}/{cores(n.capacity.cpu_millis)}",
            f"{n.allocated.memory_mib}/{n.capacity.memory_mib}",
            f"{n.allocated.gpus}/{n.capacity.gpus}" if n.capacity.gpus else "",
            f"{n.allocated.gpu_millis}/{n.capacity.gpu_millis}" if n.capacity.gpus else "",
            "cordoned" if n.cordoned else "",
        )
        for n in nodes
    ]
    header = (
        "NODE",
        "POOL",
        "RACK",
        "GPU MODEL",
        "CORES",
        "MEMORY MIB",
        "GPUS",
        "GPU MILLIS",
        "STATE",
    )
    return table(rows, header)


def reserved_table(resp: pb.ListSitesResponse, hours: int = 24) -> str:
    """Cores reserved by work that starts later: a column per site, a line per hour ahead
    (from the start of the current hour, in UTC) that has any."""
    start = resp.reserved_from.seconds
    rows = []
    for h in range(hours):
        values = [
            s.reserved_cores_by_hour[h] if h < len(s.reserved_cores_by_hour) else 0.0
            for s in resp.sites
        ]
        if any(values):
            when = datetime.fromtimestamp(start + h * 3600, UTC).strftime("%m-%d %H:00Z")
            rows.append((when, *(f"{v:.1f}" for v in values)))
    if not rows:
        return "reserved: none in the next 24 h"
    return table(rows, ("RESERVED CORES", *(s.name.upper() for s in resp.sites)))


def move_plan_tables(plan: pb.MovePlan) -> str:
    """A line per move, then a line per replica that stays and why."""
    out = [
        table(
            [(m.workload_id, m.replica, m.from_node, m.to_node) for m in plan.moves],
            ("WORKLOAD", "REPLICA", "FROM", "TO"),
        )
    ]
    if plan.stuck:
        rows = [(x.workload_id, x.replica, x.node, clip(x.reason, 70)) for x in plan.stuck]
        out += ["", table(rows, ("WORKLOAD", "REPLICA", "STAYS ON", "WHY"))]
    return "\n".join(out)


def event_line(e: pb.WorkloadEvent) -> str:
    """One state change: when, sequence, workload, from -> to, and where or why."""
    w = e.workload
    detail = sites_of(w) or w.reason
    return (
        f"{timestamp(e.time)}  #{e.sequence}  {w.id}  {w.spec.tenant}/{w.spec.name}  "
        f"{state_name(e.previous_state)} -> {state_name(w.state)}  {clip(detail, 80)}"
    )
