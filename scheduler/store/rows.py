"""Workloads as rows of the ``workloads`` and ``placements`` tables, and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.domain import Cost, ReplicaPlacement, Workload, WorkloadState
from scheduler.store.codec import gpus_from_text, instant, spec_from_json
from scheduler.store.connection import Conn, Row, in_lists

COLUMNS = (
    "ord, id, state, spec, reason, created_at, placed_at, "
    "energy_cny_per_hour, carbon_kg_per_hour, power_watts"
)
PLACEMENT_COLUMNS = "workload_id, replica, site, node, latency_ms, gpu_indices, start_time"
# states as stored, for comparisons on hot paths (an IntEnum compares several times slower)
PENDING = int(WorkloadState.PENDING)
PLACED = int(WorkloadState.PLACED)


def changed(w: Workload, **changes: Any) -> Workload:
    """``dataclasses.replace`` for the hot paths: a few times faster on slotted dataclasses."""
    return Workload(
        id=w.id,
        spec=w.spec,
        state=changes.get("state", w.state),
        placements=changes.get("placements", w.placements),
        reason=changes.get("reason", w.reason),
        created_at=w.created_at,
        placed_at=changes.get("placed_at", w.placed_at),
        cost=changes.get("cost", w.cost),
    )


def workloads(conn: Conn, rows: Sequence[Row]) -> list[Workload]:
    """Workloads of ``rows`` (in ``COLUMNS`` order) with their placements."""
    placed_ids = [r[1] for r in rows if r[6] is not None]
    reps: dict[str, list[ReplicaPlacement]] = {}
    for marks, chunk in in_lists(placed_ids):
        for p in conn.query(
            f"SELECT {PLACEMENT_COLUMNS} FROM placements WHERE workload_id IN ({marks}) "
            "ORDER BY workload_id, replica",
            chunk,
        ):
            reps.setdefault(p[0], []).append(
                ReplicaPlacement(
                    replica=int(p[1]),
                    site=p[2],
                    node=p[3],
                    latency_ms=float(p[4]),
                    gpu_indices=gpus_from_text(p[5]),
                    start_time=instant(p[6]),
                )
            )
    return [
        Workload(
            id=r[1],
            spec=spec_from_json(r[3]),
            state=WorkloadState(int(r[2])),
            placements=tuple(reps.get(r[1], ())),
            reason=r[4],
            created_at=instant(r[5]),
            placed_at=instant(r[6]),
            cost=Cost(float(r[7]), float(r[8]), float(r[9])),
        )
        for r in rows
    ]


def load(conn: Conn, ids: Sequence[str], for_update: str = "") -> dict[str, Workload]:
    """The workloads of ``ids`` that exist, by id; ``for_update`` is appended to the SELECT
    (the dialect's row lock, inside a write)."""
    out: dict[str, Workload] = {}
    for marks, chunk in in_lists(ids):
        rows = conn.query(
            f"SELECT {COLUMNS} FROM workloads WHERE id IN ({marks}){for_update}", chunk
        )
        out.update((w.id, w) for w in workloads(conn, rows))
    return out


def states(conn: Conn, ids: Sequence[str], for_update: str) -> dict[str, int]:
    """State (as its integer) of each of ``ids`` that exists, locked with ``for_update``."""
    out: dict[str, int] = {}
    for marks, chunk in in_lists(ids):
        out.update(
            conn.query(
                f"SELECT id, state FROM workloads WHERE id IN ({marks}){for_update}",
                chunk,
            )
        )
    return out
